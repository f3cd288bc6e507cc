//! Standalone model double for demos and end-to-end scripts.
//!
//! `llm-double [ADDR]` (default `127.0.0.1:8082`) prints its base URL — the value for
//! `GUARDIAN__LLM__API_URL` — as the first line of stdout and serves until killed.

use std::net::SocketAddr;
use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    let arg = std::env::args().nth(1);
    let Ok(addr) = arg
        .as_deref()
        .unwrap_or("127.0.0.1:8082")
        .parse::<SocketAddr>()
    else {
        eprintln!("usage: llm-double [ADDR]   (for example 127.0.0.1:8082)");
        return ExitCode::from(2);
    };
    match llm_double::LlmDouble::start_on(addr).await {
        Ok(double) => println!("{}", double.url()),
        Err(e) => {
            eprintln!("llm-double: cannot listen on {addr}: {e}");
            return ExitCode::FAILURE;
        }
    }
    // Serving happens in a background task; park until the process is killed.
    std::future::pending::<()>().await;
    ExitCode::SUCCESS
}
