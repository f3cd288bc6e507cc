//! Standalone GitHub REST double for demos and manual testing.
//!
//! `github-double --listen 127.0.0.1:8081 [--seed demo] [--token T]` prints its base URL
//! as the first line of stdout (so scripts can read it) and serves until killed.

use std::net::SocketAddr;
use std::process::ExitCode;

use github_double::{GithubDouble, seed_demo};

const USAGE: &str = "usage: github-double [--listen ADDR] [--seed demo] [--token TOKEN]";

#[tokio::main]
async fn main() -> ExitCode {
    let mut listen: SocketAddr = SocketAddr::from(([127, 0, 0, 1], 8081));
    let mut seed = None;
    let mut token = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) => (f.to_string(), Some(v.to_string())),
            None => (arg.clone(), None),
        };
        let mut value = || inline.clone().or_else(|| args.next());
        match flag.as_str() {
            "--listen" => match value().and_then(|v| v.parse().ok()) {
                Some(a) => listen = a,
                None => return usage("--listen needs an address like 127.0.0.1:8081"),
            },
            "--seed" => seed = value(),
            "--token" => token = value(),
            "-h" | "--help" => {
                println!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            other => return usage(&format!("unknown argument {other}")),
        }
    }
    let double = match GithubDouble::start_on(listen).await {
        Ok(d) => d,
        Err(e) => {
            eprintln!("github-double: cannot listen on {listen}: {e}");
            return ExitCode::FAILURE;
        }
    };
    match seed.as_deref() {
        None => {}
        Some("demo") => seed_demo(&double),
        Some(other) => return usage(&format!("unknown seed {other} (known: demo)")),
    }
    double.set_token(token.as_deref());
    println!("{}", double.url());
    // Serving happens in a background task; park until the process is killed.
    std::future::pending::<()>().await;
    ExitCode::SUCCESS
}

fn usage(problem: &str) -> ExitCode {
    eprintln!("github-double: {problem}\n{USAGE}");
    ExitCode::from(2)
}
