//! The container image (`deploy/Dockerfile`), linted offline since Docker cannot run here:
//! multi-stage, dependencies locked, a non-root user, and the entry point and ports the
//! Kubernetes manifests expect. Rendering and tools as in `tests/deploy.rs`.

mod kube;

use std::collections::BTreeSet;

use kube::*;

// ---------------------------------------------------------------------------------------------
// Tests: the container image

/// One Dockerfile instruction, continuation lines joined.
struct Instruction {
    keyword: String,
    args: String,
}

fn dockerfile_instructions(text: &str) -> Vec<Instruction> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let t = line.trim();
        if t.starts_with('#') || (current.is_empty() && t.is_empty()) {
            continue;
        }
        if let Some(head) = t.strip_suffix('\\') {
            current.push_str(head);
            current.push(' ');
            continue;
        }
        current.push_str(t);
        let (keyword, args) = current
            .split_once(char::is_whitespace)
            .unwrap_or((&current, ""));
        out.push(Instruction {
            keyword: keyword.to_ascii_uppercase(),
            args: args.trim().to_string(),
        });
        current.clear();
    }
    out
}

/// Steps: read deploy/docker/Dockerfile; expect at least two stages, the first named, a
/// `cargo build --release --locked` in a build stage, every COPY from the context naming a
/// file of the repository that .dockerignore keeps; in the final stage a base image with a
/// tag other than latest, the binary copied from the build stage to the ENTRYPOINT path, a
/// numeric non-root USER, EXPOSE of the Deployment's container ports (6379 and 9121), and a
/// CMD equal to the Deployment's arguments; expect .dockerignore to exclude target/.
#[test]
fn dockerfile_is_multi_stage_locked_and_non_root() {
    let text_df =
        std::fs::read_to_string(root().join("deploy/docker/Dockerfile")).expect("Dockerfile");
    let ignore = std::fs::read_to_string(root().join(".dockerignore")).expect(".dockerignore");
    let ignored: Vec<&str> = ignore
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| l.trim_start_matches('/').trim_end_matches('/'))
        .collect();
    assert!(
        ignored.contains(&"target"),
        ".dockerignore must exclude target/"
    );

    // Stages: (image, alias, instructions).
    let mut stages: Vec<(String, Option<String>, Vec<Instruction>)> = Vec::new();
    for i in dockerfile_instructions(&text_df) {
        if i.keyword == "FROM" {
            let words: Vec<&str> = i
                .args
                .split_whitespace()
                .filter(|w| !w.starts_with("--"))
                .collect();
            let alias = match words.as_slice() {
                [_, as_, alias] if as_.eq_ignore_ascii_case("as") => Some(alias.to_string()),
                [_] => None,
                other => panic!("FROM {other:?}"),
            };
            stages.push((words[0].to_string(), alias, Vec::new()));
        } else {
            stages
                .last_mut()
                .unwrap_or_else(|| panic!("{} before FROM", i.keyword))
                .2
                .push(i);
        }
    }
    assert!(stages.len() >= 2, "multi-stage: build and runtime");
    let (builder_image, builder, build) = &stages[0];
    let builder = builder
        .as_deref()
        .expect("the build stage is named (FROM ... AS name)");
    assert!(builder_image.starts_with("rust:"), "{builder_image}");
    assert!(
        build.iter().any(|i| i.keyword == "RUN"
            && i.args.contains("cargo build")
            && i.args.contains("--release")
            && i.args.contains("--locked")),
        "the build stage runs cargo build --release --locked"
    );
    for i in stages.iter().flat_map(|s| &s.2) {
        if i.keyword == "COPY" && !i.args.contains("--from") {
            let words: Vec<&str> = i.args.split_whitespace().collect();
            for src in &words[..words.len() - 1] {
                let src = src.trim_end_matches('/');
                assert!(
                    root().join(src).exists(),
                    "COPY {src}: not in the repository"
                );
                assert!(
                    !ignored
                        .iter()
                        .any(|ig| src == *ig || src.starts_with(&format!("{ig}/"))),
                    "COPY {src}: excluded by .dockerignore"
                );
            }
        }
    }

    let (final_image, _, runtime) = stages.last().expect("final stage");
    let (_, tag) = final_image
        .rsplit_once(':')
        .filter(|(_, t)| !t.contains('/'))
        .unwrap_or_else(|| panic!("final image {final_image} has no tag"));
    assert!(
        tag != "latest" && !tag.is_empty(),
        "final image {final_image}"
    );
    let json_list = |keyword: &str| -> Vec<String> {
        let i = runtime
            .iter()
            .rfind(|i| i.keyword == keyword)
            .unwrap_or_else(|| panic!("no {keyword} in the final stage"));
        serde_json::from_str(&i.args)
            .unwrap_or_else(|e| panic!("{keyword} must be in JSON form: {e}"))
    };
    let entrypoint = json_list("ENTRYPOINT");
    assert_eq!(entrypoint, ["/usr/local/bin/redis-failover-proxy"]);
    assert!(
        runtime.iter().any(|i| i.keyword == "COPY"
            && i.args.contains(&format!("--from={builder}"))
            && i.args.ends_with(&entrypoint[0])),
        "the binary is copied from the build stage to {}",
        entrypoint[0]
    );
    let user = runtime
        .iter()
        .rfind(|i| i.keyword == "USER")
        .expect("the final stage sets USER");
    let uid: u32 = user
        .args
        .split(':')
        .next()
        .and_then(|u| u.parse().ok())
        .expect("USER is numeric (so runAsNonRoot can verify it)");
    assert!(uid != 0, "USER must not be root");

    let d = one(
        &rendered().sets["base"],
        "Deployment",
        Some("redis-failover-proxy"),
    );
    let c = proxy_container(d);
    let cmd = json_list("CMD");
    assert_eq!(cmd, ["--config", CONFIG_PATH]);
    assert_eq!(
        strings(&c["args"]),
        cmd,
        "the Deployment starts the image's CMD"
    );
    let exposed: BTreeSet<i64> = runtime
        .iter()
        .filter(|i| i.keyword == "EXPOSE")
        .flat_map(|i| i.args.split_whitespace())
        .map(|p| p.trim_end_matches("/tcp").parse().expect("EXPOSE port"))
        .collect();
    let container_ports: BTreeSet<i64> = list(c, "/ports")
        .iter()
        .map(|p| int(p, "/containerPort"))
        .collect();
    assert_eq!(exposed, container_ports, "EXPOSE and the container ports");
    assert_eq!(exposed, BTreeSet::from([6379, 9121]));
}
