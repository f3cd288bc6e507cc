//! What a fleet run costs in GitHub API budget, with the shared ETag cache and without,
//! measured side by side in one process: a real `nats-server`, an in-process worker and
//! the GitHub double (whose rate limit, like GitHub's, is not charged for 304s).
//!
//! `cargo bench --bench github_budget` prints requests and charged requests per
//! repository for a cold run, the run after it, an unchanged steady-state run, and a run
//! after ten fixes. Counts, not
//! timings: the result is the same on a noisy machine.

use std::sync::Arc;
use std::time::Duration;

use github_double::{GithubDouble, ProtectionRules, RepoOptions};
use repo_guardian::bus::Bus;
use repo_guardian::config::Settings;
use repo_guardian::local::NatsServer;
use tokio_util::sync::CancellationToken;

const REPOS: usize = 50;
const MISSING_LICENSE: usize = 30;

#[derive(Debug, Clone, Copy, Default)]
struct Cost {
    requests: usize,
    charged: usize,
}

async fn measure(etag_cache: bool) -> anyhow::Result<Vec<(String, Cost)>> {
    let dir = tempfile::tempdir()?;
    let nats = NatsServer::start(&dir.path().join("nats"), None)?;
    let double = GithubDouble::start().await?;
    double.add_org("bench-org");
    for i in 0..REPOS {
        let name = format!("repo-{i:02}");
        double.add_repo("bench-org", &name, RepoOptions::default());
        for path in ["README.md", "SECURITY.md", ".github/CODEOWNERS"] {
            double.put_file("bench-org", &name, path, "x\n");
        }
        if i >= MISSING_LICENSE {
            double.put_file("bench-org", &name, "LICENSE", "MIT License\n");
        }
        double.set_protection(
            "bench-org",
            &name,
            Some(ProtectionRules {
                required_approving_reviews: Some(1),
                ..Default::default()
            }),
        );
    }
    let env = [
        ("GUARDIAN__NATS__URL", nats.url.clone()),
        ("GUARDIAN__GITHUB__API_URL", double.url()),
        ("GUARDIAN__GITHUB__TOKEN", "bench".to_string()),
        ("GUARDIAN__GITHUB__ETAG_CACHE", etag_cache.to_string()),
        ("GUARDIAN__GITHUB__WRITE_INTERVAL", "0s".to_string()),
        ("GUARDIAN__HTTP__LISTEN", "127.0.0.1:0".to_string()),
    ];
    let settings = Settings::load_from(None, env.iter().map(|(k, v)| (k.to_string(), v.clone())))?;
    let bus = Bus::connect(&settings.nats, "bench").await?;
    let shutdown = CancellationToken::new();
    let worker = tokio::spawn(repo_guardian::worker::run(
        bus.clone(),
        Arc::new(settings),
        shutdown.clone(),
    ));
    tokio::time::sleep(Duration::from_millis(500)).await;

    let mut results = Vec::new();
    let run = |label: &str| {
        let label = label.to_string();
        let (bus, double) = (bus.clone(), double.clone());
        async move {
            double.clear_requests();
            let accepted = repo_guardian::client::request_run(&bus, "org:bench-org", false).await?;
            repo_guardian::client::follow(&bus, &accepted.run_id, Duration::from_secs(300)).await?;
            let requests = double.requests();
            let cost = Cost {
                requests: requests.len(),
                charged: requests.iter().filter(|r| r.status != 304).count(),
            };
            anyhow::Ok((label, cost))
        }
    };
    results.push(run("first run (30 issues filed)").await?);
    // Lists the first run changed itself (issues, labels) are fetched once more in full.
    results.push(run("next run (caches catch up)").await?);
    results.push(run("unchanged (steady state)").await?);
    for i in 0..10 {
        double.put_file(
            "bench-org",
            &format!("repo-{i:02}"),
            "LICENSE",
            "MIT License\n",
        );
    }
    results.push(run("after 10 fixes (10 closed)").await?);
    shutdown.cancel();
    worker.await??;
    Ok(results)
}

fn per_repo(n: usize) -> f64 {
    n as f64 / REPOS as f64
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let with = measure(true).await?;
    let without = measure(false).await?;
    println!(
        "GitHub API budget for an organisation of {REPOS} repositories ({MISSING_LICENSE} without a licence)\n"
    );
    println!(
        "{:<30} {:>22} {:>22} {:>10}",
        "run", "charged/repo, cache", "charged/repo, no cache", "saving"
    );
    for ((label, c), (_, n)) in with.iter().zip(&without) {
        let ratio = if c.charged == 0 {
            "all".to_string()
        } else {
            format!("{:.1}x", n.charged as f64 / c.charged as f64)
        };
        println!(
            "{label:<30} {:>10.2} ({:>4} req) {:>10.2} ({:>4} req) {ratio:>10}",
            per_repo(c.charged),
            c.requests,
            per_repo(n.charged),
            n.requests
        );
    }
    println!(
        "\n(charged = requests that count against the rate limit; a 304 Not Modified does not.)"
    );
    Ok(())
}
