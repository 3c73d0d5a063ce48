//! What one ticket token costs the waiting-room: signing (once per join) and verifying
//! (every status read and stream), against a keyed MAC (HMAC-SHA256) over the same
//! signing input, the alternative issue 23 asked to weigh. Measured in this process on
//! this machine; prints one line per operation in microseconds.
//! `cargo run --release -p contract --features signing --example token_cost`

use std::hint::black_box;
use std::time::Instant;

use aws_lc_rs::hmac;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use contract::token::{TicketClaims, TicketSigner, TicketVerifier};
use ed25519_dalek::SigningKey;
use uuid::Uuid;

const SAMPLES: u32 = 20_000;

fn main() {
    let signer = TicketSigner::new(SigningKey::from_bytes(&[7; 32]));
    let verifier = TicketVerifier::new([signer.verifying_key()]);
    let claims = TicketClaims {
        ticket_id: Uuid::now_v7(),
        event_id: "bench".into(),
        partition: 3,
        queue_number: 123_456,
        iat: 1_800_000_000,
        exp: 1_800_086_400,
        subject: None,
    };
    let token = signer.sign(&claims);
    let (signing_input, _) = token.rsplit_once('.').expect("a compact JWS");
    let mac_key = hmac::Key::new(hmac::HMAC_SHA256, &[9; 32]);

    report(
        "EdDSA token, signed (claims to JSON, base64url, Ed25519)",
        || {
            black_box(signer.sign(black_box(&claims)));
        },
    );
    report("EdDSA token, verified (parse, signature, claims)", || {
        black_box(verifier.verify(black_box(&token), 1_800_000_001)).expect("verifies");
    });
    report(
        "HMAC-SHA256 tag of the same signing input, base64url",
        || {
            let tag = hmac::sign(&mac_key, black_box(signing_input.as_bytes()));
            black_box(URL_SAFE_NO_PAD.encode(tag.as_ref()));
        },
    );
}

fn report(what: &str, mut operation: impl FnMut()) {
    let started = Instant::now();
    for _ in 0..SAMPLES {
        operation();
    }
    let us = started.elapsed().as_secs_f64() * 1e6 / f64::from(SAMPLES);
    println!("{us:8.2} us  {what}");
}
