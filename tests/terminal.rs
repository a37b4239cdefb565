//! What a person sees in a terminal, through the real binary: the live progress lines of
//! `sync` under a pseudo-terminal (`script` from util-linux) with the final table intact, the
//! quiet default log level there, nothing of either when the output is redirected, no
//! PostgreSQL NOTICEs, and the `syncs` / `syncs show` views.

mod common;

use common::{fixture_records, BinaryEnv, FixtureServer, RunOutput, TestDb};

/// Runs the binary with a pseudo-terminal as its stdin, stdout and stderr; returns what the
/// terminal received, escape sequences included.
async fn run_on_a_terminal(env: &BinaryEnv, args: &str) -> RunOutput {
    let binary = env!("CARGO_BIN_EXE_model-lens-sync");
    let mut command = tokio::process::Command::new("script");
    command
        .args(["--quiet", "--return", "--flush", "--command"])
        .arg(format!("{binary} {args}"))
        .arg("/dev/null")
        .env_clear()
        .envs(env.vars.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .env("TERM", "xterm")
        .current_dir(std::env::temp_dir())
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    for key in ["PATH", "HOME", "TMPDIR"] {
        if let Ok(value) = std::env::var(key) {
            command.env(key, value);
        }
    }
    let output = tokio::time::timeout(std::time::Duration::from_secs(120), command.output())
        .await
        .expect("finished within two minutes")
        .expect("`script` (util-linux) runs");
    RunOutput::from(output)
}

/// The text a terminal shows, line by line: escape sequences removed, split at CR and LF.
fn screen_segments(raw: &str) -> Vec<String> {
    let mut text = String::with_capacity(raw.len());
    let mut chars = raw.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            if chars.peek() == Some(&'[') {
                chars.next();
                // Parameters, then one final letter.
                for c in chars.by_ref() {
                    if c.is_ascii_alphabetic() {
                        break;
                    }
                }
            }
            continue;
        }
        text.push(c);
    }
    text.split(['\r', '\n']).map(str::to_string).collect()
}

#[tokio::test]
async fn a_sync_on_a_terminal_shows_live_lines_then_an_intact_table() {
    let db = TestDb::create().await;
    let server = FixtureServer::start().await;
    let env = BinaryEnv::new(&db, &server)
        .unset("MODEL_LENS_LOGGING__FORMAT")
        .source("huggingface", "page_size", "100")
        .source("huggingface", "max_models", "1000");
    let run = run_on_a_terminal(&env, "sync").await;
    assert_eq!(run.code, 0, "{run:?}");
    let screen = screen_segments(&run.stdout);

    // Live lines: one per source, with pages, models, rate and time.
    for source in ["models_dev", "openrouter", "huggingface", "artificial_analysis"] {
        assert!(
            screen.iter().any(|line| line.starts_with(source)
                && line.contains(" pages ")
                && line.contains(" models ")
                && line.contains("/s")),
            "no live line for {source}: {screen:#?}"
        );
    }
    // max_models is a known total: Hugging Face's line has a percentage.
    assert!(
        screen
            .iter()
            .any(|line| line.starts_with("huggingface") && line.contains('%')),
        "{screen:#?}"
    );

    // The table, whole: every line of it is a line of its own on the screen.
    let start = screen
        .iter()
        .position(|line| line.starts_with("sync 1 success in "))
        .unwrap_or_else(|| panic!("no summary: {screen:#?}"));
    let table: Vec<&String> = screen[start..].iter().filter(|line| !line.is_empty()).take(7).collect();
    assert!(
        table[1].starts_with("source                status     fetched    stored  rejected"),
        "{table:#?}"
    );
    let expected = [
        ("artificial_analysis", 12),
        ("huggingface", 1000),
        ("models_dev", fixture_records("models_dev")),
        ("openrouter", fixture_records("openrouter")),
    ];
    for (line, (source, count)) in table[2..6].iter().zip(expected) {
        let words: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(
            words[..5],
            [source, "success", &count.to_string(), &count.to_string(), "0"],
            "{table:#?}"
        );
    }
    assert!(table[6].starts_with("total"), "{table:#?}");
    // Nothing after the table but the prompt's end: the live lines were cleared before it.
    assert!(
        screen[start..].iter().all(|line| !line.contains(" pages ")),
        "{screen:#?}"
    );

    // Quiet: no INFO lines on a terminal by default; -v brings them back.
    let has_info = |screen: &[String]| screen.iter().any(|line| line.contains(" INFO "));
    assert!(!has_info(&screen), "{screen:#?}");
    let verbose = run_on_a_terminal(&env, "-v sync --source artificial_analysis").await;
    assert!(has_info(&screen_segments(&verbose.stdout)), "{verbose:?}");
}

#[tokio::test]
async fn redirected_output_has_no_live_lines_keeps_info_logs_and_no_notices() {
    let db = TestDb::create().await;
    let server = FixtureServer::start().await;
    let env = BinaryEnv::new(&db, &server);
    let run = env.run(&["sync"]).await;
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        !run.stderr.contains(" pages "),
        "no progress when stderr is not a terminal: {run:?}"
    );
    assert!(
        run.stderr.contains("INFO"),
        "redirected output keeps INFO logs: {run:?}"
    );
    let json = BinaryEnv::new(&db, &server).run(&["sync", "--json"]).await;
    assert!(!json.stderr.contains(" pages "), "{json:?}");
    serde_json::from_str::<serde_json::Value>(&json.stdout).expect("--json prints only JSON");

    // The migrations table exists from the first run on: PostgreSQL's NOTICE about it is
    // never forwarded, however loud the logs.
    let migrate = env.clone().set("RUST_LOG", "debug").run(&["migrate"]).await;
    assert_eq!(migrate.code, 0, "{migrate:?}");
    assert!(!migrate.stderr.contains("already exists"), "{migrate:?}");
    assert!(!migrate.stderr.contains("NOTICE"), "{migrate:?}");
}

#[tokio::test]
async fn syncs_lists_one_line_per_sync_and_shows_one_in_detail() {
    let db = TestDb::create().await;
    let server = FixtureServer::start().await;
    let env = BinaryEnv::new(&db, &server);
    let failing = env
        .clone()
        .source("huggingface", "base_url", &server.base_url("status500"));
    assert_eq!(failing.run(&["sync"]).await.code, 1);
    assert_eq!(env.run(&["sync", "--source", "huggingface"]).await.code, 0);

    let list = env.run(&["syncs"]).await;
    assert_eq!(list.code, 0, "{list:?}");
    let lines: Vec<&str> = list.stdout.lines().collect();
    assert_eq!(lines.len(), 3, "a header and one line per sync: {list:?}");
    assert!(
        lines[0].contains("started (UTC)") && lines[0].contains("sources"),
        "{list:?}"
    );
    let newest: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(newest[0], "2");
    assert!(
        newest[1].len() == 10 && newest[2].len() == 8,
        "date and time come second: {list:?}"
    );
    assert_eq!(&newest[3..5], ["cli", "success"]);
    assert_eq!(
        newest[newest.len() - 4..],
        [
            "models_dev:skipped",
            "openrouter:skipped",
            "huggingface:ok",
            "artificial_analysis:skipped"
        ]
    );
    assert!(
        lines[2].contains("partial") && lines[2].contains("huggingface:FAILED"),
        "{list:?}"
    );

    let show = env.run(&["syncs", "show", "1"]).await;
    assert_eq!(show.code, 0, "{show:?}");
    assert!(show.stdout.starts_with("sync 1: partial (trigger: cli)"), "{show:?}");
    let huggingface = show
        .stdout
        .lines()
        .find(|line| line.starts_with("huggingface"))
        .unwrap();
    assert!(
        huggingface.contains("failed") && huggingface.contains("500"),
        "{show:?}"
    );
    let json = env.run(&["syncs", "show", "2", "--json"]).await;
    let detail: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(detail["id"], 2);
    assert_eq!(detail["sources"].as_array().unwrap().len(), 4);
    let missing = env.run(&["syncs", "show", "99"]).await;
    assert_eq!(missing.code, 2);
    assert!(missing.stderr.contains("there is no sync 99"), "{missing:?}");
}
