//! Unit tests of [`crate::monitor_line`].

use crate::monitor_line::*;

/// Redis's `sdscatrepr` (sds.c), byte for byte, to check the parser against what a node
/// writes.
fn sdscatrepr(arg: &[u8]) -> String {
    let mut s = String::from("\"");
    for &b in arg {
        match b {
            b'\\' | b'"' => {
                s.push('\\');
                s.push(b as char);
            }
            b'\n' => s.push_str("\\n"),
            b'\r' => s.push_str("\\r"),
            b'\t' => s.push_str("\\t"),
            7 => s.push_str("\\a"),
            8 => s.push_str("\\b"),
            // C's isprint in the "C" locale.
            0x20..=0x7e => s.push(b as char),
            _ => s.push_str(&format!("\\x{b:02x}")),
        }
    }
    s.push('"');
    s
}

#[test]
fn parses_monitor_lines() {
    let l = parse_line(
        b"+1795276585.099881 [0 127.0.0.1:58214] \"set\" \"foo\" \"a\\\"b\\\\c\\x01\"\r\n",
    )
    .unwrap();
    assert_eq!(l.unix_us, 1_795_276_585_099_881);
    assert_eq!(l.client, "127.0.0.1:58214");
    assert_eq!(
        l.args,
        vec![b"set".to_vec(), b"foo".to_vec(), b"a\"b\\c\x01".to_vec()]
    );
    let l = parse_line(b"+1.000002 [3 lua] \"GET\" \"\"\r\n").unwrap();
    assert_eq!(l.unix_us, 1_000_002);
    assert_eq!(l.client, "lua");
    assert_eq!(l.args, vec![b"GET".to_vec(), Vec::new()]);
    let l = parse_line(b"+1.5 [0 [::1]:6000] \"PING\"").unwrap();
    assert_eq!(l.client, "[::1]:6000");
    assert_eq!(l.args, vec![b"PING".to_vec()]);
    assert_eq!(parse_line(b"+OK\r\n"), None);
    assert_eq!(parse_line(b"+1.5 [0 x] \"unterminated\r\n"), None);
    assert_eq!(parse_line(b"+1.5 [0 x] \"cut \\x4\""), None);
}

#[test]
fn unescapes_what_sdscatrepr_writes() {
    // A value as a node shows it: UTF-8 (escaped byte by byte), control bytes, quotes.
    let l = parse_line(
        b"+1.000001 [0 127.0.0.1:1] \"RPUSH\" \"k\\r\\n\" \"\\xe2\\x82\\xac\\n\\t\\a\\b\\\"\\\\x\"",
    )
    .unwrap();
    assert_eq!(l.args[1], b"k\r\n");
    assert_eq!(l.args[2], "€\n\t\x07\x08\"\\x".as_bytes());
    // Every byte, alone and between others, survives the round trip.
    let every: Vec<u8> = (0..=255u8).collect();
    let mut line = "+1700000000.000001 [0 127.0.0.1:5000] \"SET\"".to_string();
    for b in 0..=255u8 {
        line.push(' ');
        line.push_str(&sdscatrepr(&[b]));
    }
    line.push(' ');
    line.push_str(&sdscatrepr(&every));
    let l = parse_line(line.as_bytes()).unwrap();
    assert_eq!(l.args.len(), 258);
    for b in 0..=255u8 {
        assert_eq!(l.args[usize::from(b) + 1], [b], "byte {b:#04x}");
    }
    assert_eq!(l.args[257], every);
}
