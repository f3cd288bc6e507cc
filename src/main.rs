//! `guardian`: the thin binary around the library (see `repo_guardian::cli`).

#[tokio::main]
async fn main() -> std::process::ExitCode {
    repo_guardian::cli::main().await
}
