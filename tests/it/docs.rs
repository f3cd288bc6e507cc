//! Docs that cannot rot: each test fails when the code changes without its documentation.
//!
//! - every configuration key (`guardian config defaults --format json`) is in
//!   `docs/configuration.md`, and every key documented there exists;
//! - every command, flag and value of the binary is in `docs/cli.md`, every flag documented
//!   there exists, and its exit-code table equals the binary's (`--help` prints it);
//! - every JSON Schema in `docs/schemas/` is the one generated from the Rust types;
//! - every `guardian` command in a runbook (`docs/operations/*.md`) parses, and the read-only
//!   ones succeed against a test fleet; every `nats` command names streams, consumers,
//!   buckets, services and subjects that exist on a provisioned server.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use repo_guardian::cli::{EXIT_CODES, command};

use crate::cli::guardian;
use crate::helpers::Harness;

fn repo_file(path: &str) -> String {
    let full = Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{}: {e}", full.display()))
}

/// Leaf keys of a JSON object as dotted paths; a policy id becomes `<id>`, as documented.
fn leaf_keys(prefix: &str, value: &serde_json::Value, out: &mut BTreeSet<String>) {
    match value {
        serde_json::Value::Object(map) if !map.is_empty() => {
            for (key, child) in map {
                let key = if prefix == "policies" {
                    "<id>"
                } else {
                    key.as_str()
                };
                let path = if prefix.is_empty() {
                    key.to_string()
                } else {
                    format!("{prefix}.{key}")
                };
                leaf_keys(&path, child, out);
            }
        }
        _ => {
            out.insert(prefix.to_string());
        }
    }
}

/// Backticked tokens of the first cell of each table row of `text`.
fn first_cell_keys(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split(" |").next())
        .flat_map(|cell| cell.split('`').map(str::to_string).collect::<Vec<_>>())
        .map(|t| t.trim_matches([',', ' ']).to_string())
        .filter(|t| t.contains('.') && !t.contains(' ') && !t.is_empty())
        .collect()
}

#[test]
fn every_configuration_key_is_documented_and_every_documented_key_exists() {
    let dir = tempfile::tempdir().unwrap();
    let run = guardian(dir.path(), &["config", "defaults", "--format", "json"], &[]);
    assert_eq!(run.code, 0, "{run:#?}");
    let defaults: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    let mut keys = BTreeSet::new();
    leaf_keys("", &defaults, &mut keys);
    let doc = repo_file("docs/configuration.md");
    let undocumented: Vec<_> = keys
        .iter()
        .filter(|k| !doc.contains(&format!("`{k}`")))
        .collect();
    assert!(
        undocumented.is_empty(),
        "keys missing from docs/configuration.md: {undocumented:?}"
    );
    // A documented policy option (`policies.<id>.options.<name>`) needs a policy of that id;
    // its options are checked by the policy itself.
    let policy_ids: BTreeSet<String> = defaults["policies"]
        .as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default();
    let is_policy_option = |k: &str| {
        k.strip_prefix("policies.")
            .and_then(|rest| rest.split_once(".options."))
            .is_some_and(|(id, _)| policy_ids.contains(id))
    };
    let unknown: Vec<_> = first_cell_keys(&doc)
        .into_iter()
        .filter(|k| !keys.contains(k) && !is_policy_option(k))
        .collect();
    assert!(
        unknown.is_empty(),
        "docs/configuration.md documents keys the binary does not have: {unknown:?}"
    );
}

#[test]
fn published_schemas_are_the_generated_ones() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/schemas");
    if std::env::var("UPDATE_SCHEMAS").as_deref() == Ok("1") {
        repo_guardian::schemas::write(&dir).expect("write schemas");
    }
    let mut problems = vec![];
    let mut names = BTreeSet::new();
    for (name, schema) in repo_guardian::schemas::all() {
        names.insert(name.to_string());
        let published = std::fs::read_to_string(dir.join(name)).unwrap_or_default();
        if published != repo_guardian::schemas::render(&schema) {
            problems.push(format!("docs/schemas/{name} differs from the Rust types"));
        }
    }
    for entry in std::fs::read_dir(&dir).expect("docs/schemas") {
        let name = entry
            .expect("entry")
            .file_name()
            .to_string_lossy()
            .into_owned();
        if name.ends_with(".json") && !names.contains(&name) {
            problems.push(format!("docs/schemas/{name} is not generated any more"));
        }
    }
    assert!(
        problems.is_empty(),
        "{}
regenerate with: UPDATE_SCHEMAS=1 cargo test --test it docs::published_schemas",
        problems.join("\n")
    );
}

/// Every subcommand path with its command, depth first (`["runs", "show"]`).
fn leaves(cmd: &clap::Command, path: Vec<String>, out: &mut Vec<(Vec<String>, clap::Command)>) {
    let subs: Vec<_> = cmd
        .get_subcommands()
        .filter(|s| s.get_name() != "help")
        .collect();
    if subs.is_empty() && !path.is_empty() {
        out.push((path, cmd.clone()));
        return;
    }
    for sub in subs {
        let mut p = path.clone();
        p.push(sub.get_name().to_string());
        leaves(sub, p, out);
    }
}

/// The row of `docs/cli.md` documenting `guardian <path>`.
fn row<'a>(doc: &'a str, path: &[String]) -> Option<&'a str> {
    let start = format!("| `guardian {}", path.join(" "));
    doc.lines().find(|l| {
        l.starts_with(&start)
            && l[start.len()..]
                .chars()
                .next()
                .is_some_and(|c| c == ' ' || c == '`')
    })
}

/// The `--long` flags written in `text`.
fn flags_in(text: &str) -> BTreeSet<String> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
        .filter(|t| t.starts_with("--") && t.len() > 2)
        .map(str::to_string)
        .collect()
}

#[test]
fn the_cli_reference_matches_the_binary() {
    let doc = repo_file("docs/cli.md");
    let root = command();
    let mut problems = vec![];
    let mut paths = vec![];
    leaves(&root, vec![], &mut paths);
    for (path, cmd) in &paths {
        let Some(row) = row(&doc, path) else {
            problems.push(format!("`guardian {}` has no row", path.join(" ")));
            continue;
        };
        let mut known = BTreeSet::new();
        for arg in cmd.get_arguments().filter(|a| !a.is_global_set()) {
            if let Some(long) = arg.get_long() {
                known.insert(format!("--{long}"));
                if long != "help" && !row.contains(&format!("--{long}")) {
                    problems.push(format!(
                        "`guardian {}`: --{long} undocumented",
                        path.join(" ")
                    ));
                }
            } else if arg.get_possible_values().is_empty() {
                let name = arg
                    .get_value_names()
                    .and_then(|n| n.first().map(|s| s.to_string()))
                    .unwrap_or_else(|| arg.get_id().to_string().to_uppercase());
                if !row.contains(&name) {
                    problems.push(format!(
                        "`guardian {}`: {name} undocumented",
                        path.join(" ")
                    ));
                }
            }
            let values = if arg.get_action().takes_values() {
                arg.get_possible_values()
            } else {
                vec![]
            };
            for value in values {
                if !row.contains(value.get_name()) {
                    problems.push(format!(
                        "`guardian {}`: value `{}` undocumented",
                        path.join(" "),
                        value.get_name()
                    ));
                }
            }
        }
        for flag in flags_in(row) {
            if !known.contains(&flag) {
                problems.push(format!(
                    "`guardian {}`: documented {flag} does not exist",
                    path.join(" ")
                ));
            }
        }
    }
    // Rows for commands that do not exist.
    for line in doc.lines().filter(|l| l.starts_with("| `guardian ")) {
        if !paths.iter().any(|(p, _)| row(&doc, p) == Some(line)) {
            problems.push(format!("documented command does not exist: {line}"));
        }
    }
    for arg in root.get_arguments().filter(|a| a.get_long().is_some()) {
        let long = format!("--{}", arg.get_long().unwrap_or_default());
        if long != "--help"
            && !doc.contains(&format!("`{long}"))
            && !doc.contains(&format!(", `{long}`"))
        {
            problems.push(format!("global option {long} undocumented"));
        }
    }
    // Exit codes: the documented table is the binary's table.
    let section = doc.split("## Exit codes").nth(1).unwrap_or_default();
    let documented: Vec<(u8, String)> = section
        .lines()
        .filter_map(|l| {
            let cells: Vec<&str> = l.split('|').map(str::trim).collect();
            let code = cells.get(1)?.parse().ok()?;
            Some((code, cells.get(2)?.to_string()))
        })
        .collect();
    let actual: Vec<(u8, String)> = EXIT_CODES
        .iter()
        .map(|(c, m)| (*c, m.to_string()))
        .collect();
    if documented != actual {
        problems.push(format!(
            "exit codes in docs/cli.md {documented:?} differ from the binary's {actual:?}"
        ));
    }
    let dir = tempfile::tempdir().unwrap();
    let help = guardian(dir.path(), &["--help"], &[]);
    for (code, meaning) in EXIT_CODES {
        if !help.stdout.contains(&format!("{code}  {meaning}")) {
            problems.push(format!("`guardian --help` lacks exit code {code}"));
        }
    }
    assert!(problems.is_empty(), "docs/cli.md:\n{}", problems.join("\n"));
}

/// Splits a shell line into words (single and double quotes, no expansion), dropping a
/// trailing `# comment`.
fn words(line: &str) -> Vec<String> {
    let mut out = vec![];
    let mut word = String::new();
    let mut quote = None;
    let mut in_word = false;
    for c in line.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => word.push(c),
            (None, '\'' | '"') => {
                quote = Some(c);
                in_word = true;
            }
            (None, '#') if !in_word => break,
            (None, c) if c.is_whitespace() => {
                if in_word {
                    out.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            (None, c) => {
                word.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        out.push(word);
    }
    out
}

/// Commands in fenced code blocks of the runbooks, with the file they come from.
fn runbook_commands() -> Vec<(PathBuf, Vec<String>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/operations");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    files.sort();
    let mut out = vec![];
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let mut fenced = false;
        let mut pending = String::new();
        for line in text.lines() {
            if line.trim_start().starts_with("```") {
                fenced = !fenced;
                pending.clear();
                continue;
            }
            // A line ending in `\` continues on the next one.
            pending.push_str(line.trim().trim_start_matches("$ "));
            if let Some(start) = pending.strip_suffix('\\') {
                pending = format!("{start} ");
                continue;
            }
            let line = std::mem::take(&mut pending);
            if fenced && (line.starts_with("guardian ") || line.starts_with("nats ")) {
                out.push((file.clone(), words(&line)));
            }
        }
    }
    out
}

/// Placeholders a runbook writes for values only a live fleet knows.
fn is_placeholder(word: &str) -> bool {
    const WORDS: &[&str] = &[
        "RUN_ID", "ID", "KEY", "NAME", "STEP", "STREAM", "CONSUMER", "BUCKET",
    ];
    word.contains('<') || word.contains('…') || WORDS.contains(&word)
}

/// Commands that only read, run for real against the test fleet.
const READ_ONLY: &[&[&str]] = &[
    &["runs", "list"],
    &["runs", "show"],
    &["dlq", "list"],
    &["provision"],
    &["config", "defaults"],
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runbook_commands_work_against_a_test_fleet() {
    let mut h = Harness::start().await;
    h.seed_org("book-org", 1, 0);
    h.spawn_worker().await;
    let record = h.run("book-org/repo-00", true).await;
    let commands = runbook_commands();
    assert!(
        commands.len() >= 20,
        "runbooks name only {} commands",
        commands.len()
    );
    let mut problems = vec![];
    for (file, words) in &commands {
        let name = file.file_name().unwrap_or_default().to_string_lossy();
        let shown = words.join(" ");
        let result = if words[0] == "guardian" {
            check_guardian(&h, words, &record.run_id)
        } else {
            check_nats(&h, &words[1..]).await
        };
        if let Err(problem) = result {
            problems.push(format!("{name}: `{shown}`: {problem}"));
        }
    }
    assert!(
        problems.is_empty(),
        "runbook commands:\n{}",
        problems.join("\n")
    );
}

fn check_guardian(h: &Harness, words: &[String], run_id: &str) -> Result<(), String> {
    let args: Vec<String> = words
        .iter()
        .map(|w| match w.as_str() {
            "RUN_ID" | "<run_id>" | "<RUN_ID>" => run_id.to_string(),
            "ID" | "[ID]" | "<id>" => "1".to_string(),
            _ => w.clone(),
        })
        .collect();
    command()
        .try_get_matches_from(&args)
        .map_err(|e| e.to_string())?;
    let rest: Vec<&str> = args[1..].iter().map(String::as_str).collect();
    if READ_ONLY.iter().any(|ro| rest.starts_with(ro)) {
        let run = guardian(h.dir.path(), &rest, &[("NATS_URL", &h.nats.url)]);
        if run.code != 0 {
            return Err(format!("exit {}: {}", run.code, run.stderr));
        }
    }
    Ok(())
}

/// Global options of the `nats` CLI that take a value.
const NATS_OPTIONS: &[&str] = &[
    "--server",
    "-s",
    "--tlsca",
    "--tlscert",
    "--tlskey",
    "--nkey",
    "--user",
    "--password",
    "--creds",
    "--context",
];

async fn check_nats(h: &Harness, words: &[String]) -> Result<(), String> {
    let mut rest = vec![];
    let mut i = 0;
    while i < words.len() {
        if NATS_OPTIONS.contains(&words[i].as_str()) {
            i += 2;
            continue;
        }
        if !words[i].starts_with('-') {
            rest.push(words[i].as_str());
        } else if words[i] == "--subject" {
            i += 1;
        }
        i += 1;
    }
    let named = |n: Option<&&str>| n.filter(|w| !is_placeholder(w)).map(|w| w.to_string());
    let js = &h.bus.js;
    match rest.as_slice() {
        ["kv", op, tail @ ..]
            if [
                "get", "put", "del", "watch", "ls", "history", "info", "status", "keys",
            ]
            .contains(op) =>
        {
            if let Some(bucket) = named(tail.first()) {
                js.get_key_value(&bucket)
                    .await
                    .map_err(|e| format!("bucket {bucket}: {e}"))?;
            }
            Ok(())
        }
        ["stream", op, tail @ ..]
            if ["info", "view", "ls", "report", "get", "subjects", "state"].contains(op) =>
        {
            if let Some(stream) = named(tail.first()) {
                js.get_stream(&stream)
                    .await
                    .map_err(|e| format!("stream {stream}: {e}"))?;
            }
            Ok(())
        }
        ["consumer", op, tail @ ..] if ["info", "next", "ls", "report"].contains(op) => {
            if let Some(stream) = named(tail.first()) {
                let s = js
                    .get_stream(&stream)
                    .await
                    .map_err(|e| format!("stream {stream}: {e}"))?;
                if let Some(consumer) = named(tail.get(1)) {
                    s.get_consumer::<async_nats::jetstream::consumer::pull::Config>(&consumer)
                        .await
                        .map_err(|e| format!("consumer {consumer}: {e}"))?;
                }
            }
            Ok(())
        }
        ["micro", op, tail @ ..] if ["ls", "info", "stats", "ping"].contains(op) => {
            if let Some(service) = named(tail.first()) {
                ask(h, &format!("$SRV.PING.{service}"), "").await?;
            }
            Ok(())
        }
        ["req" | "request", subject, ..] => {
            // An empty object is refused by every endpoint: proves someone answers there
            // without starting anything.
            ask(h, subject, "{}").await
        }
        ["server" | "account" | "rtt" | "sub" | "pub", ..] => Ok(()),
        other => Err(format!("not a nats command this test knows: {other:?}")),
    }
}

async fn ask(h: &Harness, subject: &str, payload: &str) -> Result<(), String> {
    match tokio::time::timeout(
        Duration::from_secs(5),
        h.bus
            .client
            .request(subject.to_string(), payload.to_string().into()),
    )
    .await
    {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(format!("{subject}: {e}")),
        Err(_) => Err(format!("{subject}: no answer within 5s")),
    }
}

#[test]
fn shell_words_keep_quotes_and_drop_comments() {
    assert_eq!(
        words(r#"nats req guardian.run '{"target":"o/r"}'   # start"#),
        ["nats", "req", "guardian.run", r#"{"target":"o/r"}"#]
    );
    assert!(
        is_placeholder("RUN_ID") && is_placeholder("<run_id>") && !is_placeholder("GUARDIAN_WORK")
    );
}
