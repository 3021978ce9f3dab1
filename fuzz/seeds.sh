#!/usr/bin/env bash
# Writes the seed corpus of the fuzz targets, fuzz/corpus/<target>/seed-*: small, meaningful
# inputs the fuzzers start from, kept in git. Each file is one control byte (its bits are
# described at the top of the target's source) followed by what a client sends (for the
# `frames` target, also read as what a server sends back). Run it again after changing a seed.
# Inputs that once crashed a target are kept as seed-crash-* regression cases.
# Single quotes are meant below: `$` starts a RESP bulk header, `\'` is part of an inline command.
# shellcheck disable=SC2016,SC1003
set -euo pipefail
cd "$(dirname "$0")"

# seed TARGET NAME CONTROL-BYTE-HEX BODY: BODY may use \r, \n and \xHH escapes.
seed() {
  mkdir -p "corpus/$1"
  {
    printf '%b' "\\x$3"
    printf '%b' "$4"
  } >"corpus/$1/seed-$2"
}

# cmd ARG...: one multibulk command, escaped for `seed` (ASCII arguments, no backslashes).
cmd() {
  local out="*$#\\r\\n" a
  for a in "$@"; do
    out+="\$${#a}\\r\\n$a\\r\\n"
  done
  printf '%s' "$out"
}

# repeat N TEXT
repeat() {
  local i out=""
  for ((i = 0; i < $1; i++)); do out+="$2"; done
  printf '%s' "$out"
}

rm -f corpus/*/seed-*

# --- session: control bits 0-3 piece size, 4 holding, 5 password, 6 small limits, 7 drain.
s=session
seed $s ping 00 "$(cmd PING)"
seed $s inline-ping 00 'PING\r\nPING hello\n\r\n'
seed $s inline-quotes 00 'SET k "a b\\x41\\n" '"'"'it\\'"'"'s'"'"'\r\nECHO "x"\r\n'
seed $s inline-unbalanced 00 'SET k "abc\r\nPING\r\n'
seed $s pipeline 00 "$(cmd PING)$(cmd ECHO hello)$(cmd GET k)$(cmd SET k v)$(cmd INCR n)"
seed $s pipeline-bytewise 01 "$(cmd PING)$(cmd ECHO hello)$(cmd GET k)$(cmd CLIENT ID)"
seed $s pipeline-pieces 06 "$(cmd SET k v)$(cmd ECHO abcdefghijklmnop)$(cmd PING x)"
seed $s hello3 00 "$(cmd HELLO 3)$(cmd CLIENT INFO)$(cmd PING)$(cmd GET k)$(cmd HELLO 2)"
seed $s hello3-auth 20 "$(cmd HELLO 3 AUTH default secret SETNAME app)$(cmd ACL WHOAMI)$(cmd GET k)"
seed $s hello-bad 00 "$(cmd HELLO 4)$(cmd HELLO x)$(cmd HELLO 3 SETNAME)$(cmd HELLO 3 FOO)"
seed $s auth 20 "$(cmd GET k)$(cmd AUTH wrong)$(cmd AUTH secret)$(cmd AUTH app pw)$(cmd ACL WHOAMI)"
seed $s auth-open 00 "$(cmd AUTH secret)$(cmd AUTH default x)$(cmd ACL WHOAMI)"
seed $s unauth-limits a0 "$(cmd PING)*11\r\n"
seed $s unauth-bulk a0 '*1\r\n$16385\r\n'
seed $s multi-exec 00 "$(cmd MULTI)$(cmd SET k v)$(cmd INCR k)$(cmd EXEC)"
seed $s multi-discard 00 "$(cmd MULTI)$(cmd GET k)$(cmd MULTI)$(cmd DISCARD)$(cmd EXEC)$(cmd DISCARD)"
seed $s multi-error 00 "$(cmd MULTI)$(cmd NOSUCH x)$(cmd GET)$(cmd EXEC)"
seed $s watch 00 "$(cmd WATCH k)$(cmd MULTI)$(cmd WATCH j)$(cmd SET k v)$(cmd EXEC)$(cmd UNWATCH)"
seed $s subscribe 00 "$(cmd SUBSCRIBE ch)$(cmd PING)$(cmd GET k)$(cmd PSUBSCRIBE 'p*')$(cmd UNSUBSCRIBE)"
seed $s subscribe-resp3 00 "$(cmd HELLO 3)$(cmd SSUBSCRIBE s)$(cmd GET k)$(cmd PUNSUBSCRIBE)$(cmd RESET)"
seed $s tracking 00 "$(cmd HELLO 3)$(cmd CLIENT TRACKING ON BCAST PREFIX a PREFIX b)$(cmd CLIENT TRACKINGINFO)$(cmd CLIENT GETREDIR)"
seed $s tracking-redirect 00 "$(cmd CLIENT TRACKING on REDIRECT 5 OPTIN NOLOOP)$(cmd CLIENT CACHING yes)$(cmd CLIENT TRACKING off)"
seed $s client 00 "$(cmd CLIENT SETNAME x)$(cmd CLIENT GETNAME)$(cmd CLIENT SETNAME 'a b')$(cmd CLIENT LIST)$(cmd CLIENT LIST TYPE normal)$(cmd CLIENT LIST ID 1 2)"
seed $s client-setinfo 00 "$(cmd CLIENT SETINFO LIB-NAME redis-py)$(cmd CLIENT SETINFO LIB-VER 5.0)$(cmd CLIENT SETINFO x y)$(cmd CLIENT NOSUCH)"
seed $s client-reply 00 "$(cmd CLIENT REPLY OFF)$(cmd PING)$(cmd CLIENT REPLY ON)$(cmd CLIENT REPLY SKIP)$(cmd PING)$(cmd PING)"
seed $s select 00 "$(cmd SELECT 1)$(cmd SELECT x)$(cmd SELECT -1)$(cmd SELECT 99999999999)$(cmd SELECT)"
seed $s quit 00 "$(cmd PING)$(cmd QUIT)$(cmd PING)"
seed $s reset 00 "$(cmd MULTI)$(cmd SUBSCRIBE c)$(cmd RESET)$(cmd PING)"
seed $s scripts 00 "$(cmd EVAL 'return 1' 0)$(cmd SCRIPT LOAD 'return 2')$(cmd EVALSHA abc 0)$(cmd FCALL f 0)"
seed $s blocking 00 "$(cmd BLPOP l 1)$(cmd WAIT 1 0)$(cmd XREAD BLOCK 0 STREAMS s '$')$(cmd MONITOR)$(cmd PING)"
seed $s admin 00 "$(cmd CONFIG GET maxmemory)$(cmd DEBUG SLEEP 0)$(cmd SHUTDOWN)$(cmd KEYS '*')$(cmd COMMAND COUNT)$(cmd NOSUCHCOMMAND a b)"
seed $s holding 10 "$(cmd GET k)$(cmd SET k v)$(cmd PING)$(cmd GET j)"
seed $s holding-multi 13 "$(cmd MULTI)$(cmd GET k)$(cmd EXEC)$(cmd SUBSCRIBE c)"
seed $s drain 87 "$(cmd PING)$(cmd GET k)$(cmd SET k v)$(cmd ECHO x)"
seed $s small-limits 40 "$(cmd ECHO "$(repeat 70 x)")"
seed $s small-query-buffer 40 "*2\r\n\$4\r\nECHO\r\n\$60\r\n$(repeat 60 y)"
seed $s partial 00 '*3\r\n$3\r\nSET\r\n$1\r\nk'
seed $s huge-bulk 00 '*1\r\n$536870912\r\nabc'
seed $s huge-multibulk 00 '*2147483647\r\n$1\r\na\r\n'
seed $s negative-lengths 00 '*-1\r\n*0\r\n*1\r\n$-1\r\n'
seed $s expected-dollar 00 '*1\r\n+OK\r\n'
seed $s bad-terminator 00 '*1\r\n$4\r\nPINGxx*1\r\n$4\r\nPING\r\n'
seed $s crash-cr-in-error 3f '*1\r1\r+'

# --- session_backend: first byte bits 0-3 piece size, 4 password, 5 small limits, 6 drain,
# 7 patient client; second byte (the first of BODY) scripts the fake master: bits 0-2 cut
# after N bytes, 3-4 refusal, 5-6 reply delay, 7 replica.
b=session_backend
w="$(cmd SET k v)$(cmd INCR n)$(cmd GET k)$(cmd PING)"
seed $b pipeline 80 "\\x00$w"
seed $b pipeline-impatient 00 "\\x00$w$w"
seed $b bytewise 81 "\\x00$w"
seed $b cut-in-handshake 80 "\\x01$w"
seed $b cut-mid-batch 80 "\\x03$w$w$w"
seed $b cut-later 80 "\\x05$w$w$w$w$w$w"
seed $b readonly 80 "\\x08$w"
seed $b loading 80 "\\x10$w"
seed $b masterdown-cut 80 "\\x1c$w$w"
seed $b slow 80 "\\x60$w"
seed $b replica 80 "\\x80$w"
seed $b multi-cut 80 "\\x03$(cmd MULTI)$(cmd SET k v)$(cmd INCR n)$(cmd EXEC)$(cmd GET k)"
seed $b watch-cut 80 "\\x04$(cmd WATCH k)$(cmd GET k)$(cmd MULTI)$(cmd SET k v)$(cmd EXEC)"
seed $b subscribe-cut 80 "\\x04$(cmd SUBSCRIBE ch)$(cmd PING)$(cmd UNSUBSCRIBE)$(cmd GET k)"
seed $b blocking-cut 80 "\\x03$(cmd BLPOP l 1)$(cmd GET k)$(cmd WAIT 1 0)"
seed $b select-cut 80 "\\x04$(cmd SELECT 1)$(cmd SET k v)$(cmd HELLO 3)$(cmd GET k)"
seed $b reply-off-cut 80 "\\x03$(cmd CLIENT REPLY OFF)$(cmd SET k v)$(cmd CLIENT REPLY ON)$(cmd GET k)"
seed $b drain-cut c0 "\\x05$w$w"
seed $b small-limits a0 "\\x03$w$(cmd ECHO "$(repeat 70 x)")"
seed $b auth 90 "\\x03$(cmd GET k)$(cmd AUTH secret)$w"

# --- frames: control bits 0-4 piece size, 5 small limits, 6 long first line / streaming
# replies, 7 unauthenticated. Client commands first, then server replies.
f=frames
seed $f pipeline 00 "$(cmd GET k)$(cmd SET k '')$(cmd PING)"
seed $f pipeline-bytewise 01 "$(cmd GET k)$(cmd SET k v)$(cmd HELLO 3 AUTH a b)"
seed $f inline 03 'SET k "a b\\x41\\n" '"'"'it\\'"'"'s'"'"'\r\n\r\nPING\n  \n'
seed $f inline-unbalanced 00 'SET "a\r\n'
seed $f empty-headers 02 '*0\r\n*-1\r\n*1\r\n$4\r\nPING\r\n'
seed $f bad-terminator 00 '*1\r\n$4\r\nPINGxx*1\r\n$4\r\nPING\r\n'
seed $f small-limits 25 "$(cmd ECHO "$(repeat 101 x)")"
seed $f small-args 20 '*13\r\n'
seed $f unauth-args 80 "$(cmd A B C D E F G H I J K)"
seed $f unauth-bulk 80 '*1\r\n$16385\r\n'
seed $f inline-spells-multibulk 20 "x *1\r\n\$101\r\n$(repeat 101 y)\r\n"
seed $f huge-bulk 00 '*1\r\n$536870912\r\nabc'
seed $f huge-multibulk 07 '*2147483647\r\n$1\r\na\r\n'
seed $f negative-bulk 00 '*1\r\n$-2\r\n'
seed $f leading-zero 00 '*1\r\n$01\r\na\r\n'
seed $f long-inline 41 'xy PING\r\n'
seed $f long-multibulk-header 42 '*1\r\n'
seed $f long-bulk-header 40 '$1\r\n'
seed $f partial 05 '*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\nval'
seed $f replies-resp2 00 '+OK\r\n-ERR bad\r\n:12\r\n$3\r\nfoo\r\n$-1\r\n*-1\r\n*0\r\n*2\r\n$1\r\na\r\n:1\r\n'
seed $f replies-resp3 03 '_\r\n#t\r\n,1.5\r\n(123\r\n=7\r\ntxt:abc\r\n!5\r\nERR x\r\n%1\r\n+k\r\n*2\r\n:1\r\n%0\r\n~1\r\n$1\r\na\r\n'
seed $f replies-attribute 02 '|1\r\n+meta\r\n+v\r\n+after-attr\r\n*2\r\n|1\r\n+a\r\n+b\r\n$1\r\nx\r\n'
seed $f replies-push 04 '>3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$3\r\nmsg\r\n>4\r\n$8\r\npmessage\r\n$1\r\np\r\n$2\r\nch\r\n$1\r\nm\r\n'
seed $f replies-streamed 45 '*2\r\n$26\r\nabcdefghijklmnopqrstuvwxyz\r\n:7\r\n+next\r\n'
seed $f replies-nested 01 '*3\r\n*2\r\n%1\r\n~1\r\n:1\r\n*0\r\n$1\r\nx\r\n>1\r\n*1\r\n_\r\n:9\r\n'
seed $f replies-deep 00 "$(repeat 300 '*1\r\n'):1\r\n"
seed $f replies-too-deep 1f "$(repeat 1100 '*1\r\n'):1\r\n"
seed $f replies-huge-lengths 00 '$9223372036854775807\r\nab*9223372036854775807\r\n:1\r\n'
seed $f replies-negative 00 '$-5\r\n*-3\r\n%-1\r\n|-1\r\n~0\r\n'
seed $f replies-garbage 00 '?what\r\n'
seed $f crash-empty-reply-line d5 '\r`'
seed $f crash-empty-reply-line-2 0d '\r\xed'
