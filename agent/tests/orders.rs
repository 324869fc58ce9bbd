//! Orders signed with the carrier's tooling (`cpe_provision::order_keys`)
//! and verified by the agent's pure verifier (`cpe_agent::orders`): end to
//! end, tampering, key rotation and retirement.
//!
//! `CPE_ORDER_SEEDS_DIR=fuzz/seeds/order cargo test -p cpe-agent --test orders`
//! rewrites the fuzz seeds, which verify under the fuzz target's fixed
//! context (see `fuzz/fuzz_targets/order.rs`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use cpe_agent::orders::{
    trusted_key, verify, ClockReading, ClockState, Refusal, TimeBasis, TrustedKey, VerifyContext,
};
use cpe_protocol::order::{encode_signed, Order, OrderKind, OrderTarget, ORDER_VERSION};
use cpe_provision::order_keys::{key_id, sign, OrderSigningKey};
use ring::signature::{Ed25519KeyPair, KeyPair};

const DAY: i64 = 86_400;
/// 2027-01-01T00:00:00Z.
const FLOOR: i64 = 1_798_761_600;

fn device() -> OrderTarget {
    OrderTarget { institution_code: "1312345678".into(), device: "cpe-1".into() }
}

fn order(kind: OrderKind, sequence: u64, issued_at: i64) -> Order {
    Order {
        version: ORDER_VERSION,
        id: 100 + sequence,
        target: device(),
        kind,
        sequence,
        issued_at,
        not_before: issued_at,
        expires_at: issued_at + DAY,
        reason_ja: "是正勧告の期限を過ぎても是正されませんでした".into(),
        reason_en: "Not corrected by the deadline of the recommendation".into(),
        deadline: None,
    }
}

fn signed(o: &Order, key: &OrderSigningKey) -> Vec<u8> {
    encode_signed(&sign(o, key).unwrap()).unwrap()
}

fn ctx<'a>(dev: &'a OrderTarget, keys: &'a [TrustedKey], last: u64, now: i64) -> VerifyContext<'a> {
    VerifyContext {
        device: dev,
        keys,
        last_applied_sequence: last,
        clock: ClockReading { now, state: ClockState::Trusted },
        time_floor: FLOOR,
    }
}

fn trusted(key: &OrderSigningKey) -> TrustedKey {
    trusted_key(key.public_key(), false)
}

#[test]
fn carrier_signs_agent_verifies_stop_then_resume() {
    let key = OrderSigningKey::generate().unwrap();
    let keys = [trusted(&key)];
    assert_eq!(keys[0].id, key_id(&key.public_key()), "both sides compute the same key id");
    let dev = device();
    let t = FLOOR + 10 * DAY;

    let stop = signed(&order(OrderKind::Stop, 1, t), &key);
    let v = verify(&stop, &ctx(&dev, &keys, 0, t + 5)).unwrap();
    assert_eq!(v.order, order(OrderKind::Stop, 1, t));
    assert_eq!(v.key_id, key.key_id());
    assert_eq!(v.decision_clock_state(), ClockState::Trusted);

    let resume = signed(&order(OrderKind::Resume, 2, t + 3600), &key);
    let v = verify(&resume, &ctx(&dev, &keys, 1, t + 3601)).unwrap();
    assert_eq!(v.order.kind, OrderKind::Resume);

    // The stop replayed after the resume.
    let r = verify(&stop, &ctx(&dev, &keys, 2, t + 3700)).unwrap_err();
    assert_eq!(r.refusal, Refusal::Replay { sequence: 1, last: 2 });
}

#[test]
fn a_tampered_byte_anywhere_is_refused() {
    let key = OrderSigningKey::generate().unwrap();
    let keys = [trusted(&key)];
    let dev = device();
    let t = FLOOR + DAY;
    let good = signed(&order(OrderKind::Stop, 1, t), &key);
    assert!(verify(&good, &ctx(&dev, &keys, 0, t)).is_ok());
    for i in 0..good.len() {
        for mask in [0x01u8, 0x80, 0xff] {
            let mut bad = good.clone();
            bad[i] ^= mask;
            let r = verify(&bad, &ctx(&dev, &keys, 0, t));
            assert!(r.is_err(), "byte {i} ^ {mask:#x} was accepted");
        }
    }
    // Cut anywhere.
    for len in 0..good.len() {
        assert!(verify(&good[..len], &ctx(&dev, &keys, 0, t)).is_err(), "prefix of {len} accepted");
    }
}

#[test]
fn key_rotation_under_the_old_key_then_the_new_key_verifies_and_the_old_is_retired() {
    let old = OrderSigningKey::generate().unwrap();
    let new = OrderSigningKey::generate().unwrap();
    let dev = device();
    let t = FLOOR + DAY;
    let mut keys = vec![trusted(&old)];

    // The rotation travels as an order signed by the old key.
    let rotation =
        order(OrderKind::KeyRotation { new_key: new.public_key(), retire: vec![old.key_id()] }, 1, t);
    let v = verify(&signed(&rotation, &old), &ctx(&dev, &keys, 0, t)).unwrap();
    let OrderKind::KeyRotation { new_key, retire } = v.order.kind else { panic!("not a rotation") };

    // The new key is unknown before the rotation is applied.
    let stop = order(OrderKind::Stop, 2, t + 60);
    let r = verify(&signed(&stop, &new), &ctx(&dev, &keys, 1, t + 60)).unwrap_err();
    assert_eq!(r.refusal, Refusal::UnknownKey { key_id: new.key_id() });

    // Apply it (what the enforcement layer will do).
    for k in &mut keys {
        if retire.contains(&k.id) {
            k.retired = true;
        }
    }
    keys.push(trusted_key(new_key, false));

    let v = verify(&signed(&stop, &new), &ctx(&dev, &keys, 1, t + 60)).unwrap();
    assert_eq!(v.key_id, new.key_id());

    let resume = order(OrderKind::Resume, 3, t + 120);
    let r = verify(&signed(&resume, &old), &ctx(&dev, &keys, 2, t + 120)).unwrap_err();
    assert_eq!(r.refusal, Refusal::RetiredKey { key_id: old.key_id() });
    assert!(verify(&signed(&resume, &new), &ctx(&dev, &keys, 2, t + 120)).is_ok());
}

#[test]
fn a_key_from_another_carrier_is_unknown_even_with_a_colliding_id_claim() {
    let ours = OrderSigningKey::generate().unwrap();
    let theirs = OrderSigningKey::generate().unwrap();
    let dev = device();
    let keys = [trusted(&ours)];
    let t = FLOOR + DAY;
    let mut env = sign(&order(OrderKind::Stop, 1, t), &theirs).unwrap();
    assert_eq!(
        verify(&encode_signed(&env).unwrap(), &ctx(&dev, &keys, 0, t)).unwrap_err().refusal,
        Refusal::UnknownKey { key_id: theirs.key_id() }
    );
    env.key_id = ours.key_id();
    assert_eq!(
        verify(&encode_signed(&env).unwrap(), &ctx(&dev, &keys, 0, t)).unwrap_err().refusal,
        Refusal::BadSignature { key_id: ours.key_id() }
    );
}

#[test]
fn stop_on_an_untrusted_1970_clock_end_to_end() {
    let key = OrderSigningKey::generate().unwrap();
    let keys = [trusted(&key)];
    let dev = device();
    let t = FLOOR + 100 * DAY;
    let mut c = ctx(&dev, &keys, 0, 0);
    c.clock.state = ClockState::Untrusted;
    let v = verify(&signed(&order(OrderKind::Stop, 1, t), &key), &c).unwrap();
    assert_eq!(v.time.state, ClockState::Untrusted);
    assert_eq!(v.time.basis, TimeBasis::IssuedAt);
    assert_eq!(v.time.at, t);
}

// --- fuzz seeds -----------------------------------------------------------

/// Seed of the fixed key the fuzz target trusts. Test-only, public by design.
const FUZZ_KEY_SEED: [u8; 32] = [7; 32];
/// Its public key, as hard-coded in `fuzz/fuzz_targets/order.rs`.
const FUZZ_KEY_PUBLIC: [u8; 32] = [
    0xea, 0x4a, 0x6c, 0x63, 0xe2, 0x9c, 0x52, 0x0a, 0xbe, 0xf5, 0x50, 0x7b, 0x13, 0x2e, 0xc5, 0xf9, 0x95,
    0x47, 0x76, 0xae, 0xbe, 0xbe, 0x7b, 0x92, 0x42, 0x1e, 0xea, 0x69, 0x14, 0x46, 0xd2, 0x2c,
];
/// The fuzz target's fixed clock (trusted) and floor.
const FUZZ_NOW: i64 = 1_800_000_000;
const FUZZ_FLOOR: i64 = 1_798_761_600;

fn fuzz_key() -> OrderSigningKey {
    // PKCS#8 v2 of an Ed25519 key: fixed prefix, seed, public key.
    let pair = Ed25519KeyPair::from_seed_unchecked(&FUZZ_KEY_SEED).unwrap();
    let mut der =
        vec![0x30, 0x53, 0x02, 0x01, 0x01, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20];
    der.extend_from_slice(&FUZZ_KEY_SEED);
    der.extend_from_slice(&[0xa1, 0x23, 0x03, 0x21, 0x00]);
    der.extend_from_slice(pair.public_key().as_ref());
    OrderSigningKey::from_pkcs8(&der).unwrap()
}

fn fuzz_seeds() -> Vec<(&'static str, Vec<u8>)> {
    let key = fuzz_key();
    let o = |kind, seq| {
        let mut o = order(kind, seq, FUZZ_NOW - 60);
        o.reason_ja = "停止".into();
        o.reason_en = "stop".into();
        o
    };
    vec![
        ("stop", signed(&o(OrderKind::Stop, 1), &key)),
        ("resume", signed(&o(OrderKind::Resume, 2), &key)),
        (
            "rotation",
            signed(&o(OrderKind::KeyRotation { new_key: [1; 32], retire: vec![key.key_id()] }, 3), &key),
        ),
    ]
}

#[test]
fn fuzz_seeds_verify_under_the_fuzz_context() {
    let key = fuzz_key();
    assert_eq!(key.public_key(), FUZZ_KEY_PUBLIC, "update FUZZ_KEY_PUBLIC here and in the fuzz target");
    let keys = [trusted_key(FUZZ_KEY_PUBLIC, false)];
    let dev = device();
    let c = VerifyContext {
        device: &dev,
        keys: &keys,
        last_applied_sequence: 0,
        clock: ClockReading { now: FUZZ_NOW, state: ClockState::Trusted },
        time_floor: FUZZ_FLOOR,
    };
    let seeds = fuzz_seeds();
    for (name, bytes) in &seeds {
        assert!(verify(bytes, &c).is_ok(), "seed {name}");
    }
    if let Some(dir) = std::env::var_os("CPE_ORDER_SEEDS_DIR") {
        let dir = std::path::PathBuf::from(dir);
        std::fs::create_dir_all(&dir).unwrap();
        for (name, bytes) in &seeds {
            std::fs::write(dir.join(name), bytes).unwrap();
        }
    }
}
