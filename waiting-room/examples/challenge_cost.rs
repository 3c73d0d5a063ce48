//! What a proof-of-work challenge costs: the server's side (issuing one, verifying a
//! solved one) per operation, and the client's side (solving) at a given difficulty,
//! measured in this process on this machine. Run by `k6/run.sh challenge`; prints one
//! line: `issue_us=… verify_us=… solve_ms=… difficulty=… samples=…`.

use std::time::Instant;

use altcha::{solve_challenge, Payload, SolveChallengeOptions};
use waiting_room::ChallengeKeys;

const EVENT: &str = "bench";

fn main() -> anyhow::Result<()> {
    let samples: u32 = env_or("CHALLENGE_SAMPLES", 2_000);
    let difficulty: u32 = env_or("CHALLENGE_DIFFICULTY", 50_000);
    let solved_samples = samples.min(20);
    let keys = ChallengeKeys::derive("benchmark signing key", 300);
    let now = chrono::Utc::now().timestamp();

    let started = Instant::now();
    let challenges = (0..samples)
        .map(|_| keys.issue(EVENT, difficulty, now))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let issue_us = per_operation_us(started, samples);

    // Solving is the client's cost; a few samples give its scale.
    let started = Instant::now();
    let mut payloads = Vec::with_capacity(challenges.len());
    for (index, challenge) in challenges.into_iter().enumerate() {
        let mut options = SolveChallengeOptions::new(&challenge);
        options.timeout_ms = 0;
        let solution = if index < solved_samples as usize {
            solve_challenge(options)?.ok_or_else(|| anyhow::anyhow!("unsolved"))?
        } else {
            // Verification cost does not depend on which answer it checks: reuse one.
            payloads
                .first()
                .map(|payload: &Payload| payload.solution.clone())
                .ok_or_else(|| anyhow::anyhow!("no solved sample"))?
        };
        if index + 1 == solved_samples as usize {
            eprintln!("solved {solved_samples} challenges");
        }
        payloads.push(Payload {
            challenge,
            solution,
        });
    }
    let solve_ms = started.elapsed().as_secs_f64() * 1_000.0 / f64::from(solved_samples);

    let started = Instant::now();
    let mut verified = 0_u32;
    for payload in &payloads {
        if keys.verify(payload, EVENT).is_ok() {
            verified += 1;
        }
    }
    let verify_us = per_operation_us(started, samples);
    anyhow::ensure!(
        verified >= solved_samples,
        "solved challenges failed to verify"
    );
    println!(
        "issue_us={issue_us:.1} verify_us={verify_us:.1} solve_ms={solve_ms:.1} difficulty={difficulty} samples={samples}"
    );
    Ok(())
}

fn per_operation_us(started: Instant, operations: u32) -> f64 {
    started.elapsed().as_secs_f64() * 1_000_000.0 / f64::from(operations.max(1))
}

fn env_or(name: &str, default: u32) -> u32 {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}
