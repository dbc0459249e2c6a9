//! Strict Ed25519 verification against a pinned key, without decompressing R.
//!
//! ed25519-dalek's `verify_strict` does four things: it refuses a non-canonical `s`,
//! decompresses `R` (a field square root) to refuse small-order `R` (and `R` that is not a
//! point), refuses a small-order key, and compares the canonical encoding of
//! `[s]B − [k]A` (`k = SHA-512(R ‖ A ‖ M)`) with `R`'s bytes.
//!
//! The last comparison only ever matches a canonical encoding of a curve point, and exactly
//! eight canonical encodings name small-order points (the eight-torsion subgroup). So
//! refusing those eight byte strings up front refuses the same signatures as decompressing
//! `R` does, without the square root; and a pinned key is checked for small order once, when
//! it is pinned. The acceptance set is `verify_strict`'s, which the tests below check
//! differentially (valid signatures, bit flips, small-order `R` that satisfies the
//! cofactorless equation, non-canonical `s`).
//!
//! Many signatures at once ([`StrictKey::verify_each`], what audits use) share one field
//! inversion for the final encodings, and nothing else: each is still checked alone.
//!
//! This module uses curve25519-dalek 5 directly (ed25519-dalek 2 sits on 4), because 5 has
//! the batch encoding; keys cross between them as bytes.

use std::sync::LazyLock;

use curve25519_dalek::constants::EIGHT_TORSION;
use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
use curve25519_dalek::scalar::Scalar;
use ed25519_dalek::{Signature, VerifyingKey};
use sha2::{Digest, Sha512};

/// The canonical encodings of the eight points of small order.
static SMALL_ORDER_ENCODINGS: LazyLock<[[u8; 32]; 8]> =
    LazyLock::new(|| EIGHT_TORSION.map(|point| point.compress().to_bytes()));

/// A public key prepared for repeated strict verification.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct StrictKey {
    /// The key's encoding as given (what the challenge hash covers).
    encoded: [u8; 32],
    /// `−A`.
    minus_a: EdwardsPoint,
}

impl StrictKey {
    /// Prepares `key`; `None` for a small-order (weak) key, which verifies nothing.
    pub(crate) fn new(key: &VerifyingKey) -> Option<StrictKey> {
        if key.is_weak() {
            return None;
        }
        let encoded = key.to_bytes();
        // ed25519-dalek decoded these bytes already, so they decode here too.
        let a = CompressedEdwardsY(encoded).decompress()?;
        Some(StrictKey {
            encoded,
            minus_a: -a,
        })
    }

    /// Whether `signature` is a strict Ed25519 signature of `message` under this key.
    pub(crate) fn verify(&self, message: &[u8], signature: &Signature) -> bool {
        self.expected_r(message, signature)
            .is_some_and(|point| point.compress().as_bytes() == signature.r_bytes())
    }

    /// [`StrictKey::verify`] for each pair, in order.
    ///
    /// Every signature is checked on its own, with exactly the single check's acceptance set:
    /// this is not batch verification (a random linear combination, which is not strict).
    /// What the pairs share is the last step: turning each `[s]B − [k]A` into its encoding
    /// needs a field inversion (~3 µs), and one Montgomery batch inversion serves them all.
    pub(crate) fn verify_each<'a, I>(&self, pairs: I) -> Vec<bool>
    where
        I: IntoIterator<Item = (&'a [u8], &'a Signature)>,
    {
        let pairs = pairs.into_iter();
        let mut verdicts = Vec::with_capacity(pairs.size_hint().0);
        let mut points = Vec::with_capacity(verdicts.capacity());
        let mut pending = Vec::with_capacity(verdicts.capacity());
        for (message, signature) in pairs {
            if let Some(point) = self.expected_r(message, signature) {
                points.push(point);
                pending.push((verdicts.len(), *signature.r_bytes()));
            }
            verdicts.push(false);
        }
        let encoded = EdwardsPoint::compress_batch_alloc(&points);
        for ((slot, r), point) in pending.into_iter().zip(encoded) {
            verdicts[slot] = point.as_bytes() == &r;
        }
        verdicts
    }

    /// `[s]B − [k]A`, the point whose encoding must equal `R`; `None` when the signature is
    /// refused before any curve arithmetic (non-canonical `s`, small-order `R`).
    fn expected_r(&self, message: &[u8], signature: &Signature) -> Option<EdwardsPoint> {
        let r = signature.r_bytes();
        let s = Option::<Scalar>::from(Scalar::from_canonical_bytes(*signature.s_bytes()))?;
        if SMALL_ORDER_ENCODINGS.contains(r) {
            return None;
        }
        let digest: [u8; 64] = Sha512::new()
            .chain_update(r)
            .chain_update(self.encoded)
            .chain_update(message)
            .finalize()
            .into();
        let k = Scalar::from_bytes_mod_order_wide(&digest);
        Some(EdwardsPoint::vartime_double_scalar_mul_basepoint(
            &k,
            &self.minus_a,
            &s,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use curve25519_dalek::constants::ED25519_BASEPOINT_POINT;
    use ed25519_dalek::{Signer, SigningKey, Verifier};
    use proptest::prelude::*;

    fn signing_key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    fn both(key: &VerifyingKey, message: &[u8], signature: &Signature) -> (bool, bool) {
        let ours = StrictKey::new(key)
            .expect("not weak")
            .verify(message, signature);
        let dalek = key.verify_strict(message, signature).is_ok();
        (ours, dalek)
    }

    #[test]
    fn the_small_order_encodings_are_eight_distinct_small_order_points() {
        let encodings = *SMALL_ORDER_ENCODINGS;
        for (i, e) in encodings.iter().enumerate() {
            let point = curve25519_dalek::edwards::CompressedEdwardsY(*e)
                .decompress()
                .expect("a point");
            assert!(point.is_small_order());
            assert!(!encodings[..i].contains(e), "duplicate encoding {i}");
        }
    }

    #[test]
    fn small_order_r_satisfying_the_cofactorless_equation_is_refused_like_dalek() {
        // With the secret scalar a, R = identity and s = k·a make [s]B − [k]A = identity = R:
        // the plain equation holds, so only the small-order rule refuses it.
        let signer = signing_key(7);
        let key = signer.verifying_key();
        let message = b"small order R";
        let identity = EdwardsPoint::default().compress().to_bytes();
        let digest: [u8; 64] = Sha512::new()
            .chain_update(identity)
            .chain_update(key.to_bytes())
            .chain_update(message)
            .finalize()
            .into();
        let k = Scalar::from_bytes_mod_order_wide(&digest);
        let s = k * Scalar::from_bytes_mod_order(signer.to_scalar().to_bytes());
        let mut bytes = [0u8; 64];
        bytes[..32].copy_from_slice(&identity);
        bytes[32..].copy_from_slice(s.as_bytes());
        let forged = Signature::from_bytes(&bytes);
        assert!(
            key.verify(message, &forged).is_ok(),
            "the plain check accepts it"
        );
        assert_eq!(both(&key, message, &forged), (false, false));
    }

    #[test]
    fn non_canonical_s_is_refused_like_dalek() {
        let signer = signing_key(9);
        let key = signer.verifying_key();
        let message = b"malleable";
        let signature = signer.sign(message);
        // s + ℓ is the same scalar, spelled non-canonically (still < 2^256 here).
        let s = Scalar::from_canonical_bytes(*signature.s_bytes()).expect("canonical");
        let ell_bytes = (Scalar::ZERO - Scalar::ONE).to_bytes(); // ℓ − 1
        let (mut sum, mut carry) = ([0u8; 32], 1u16); // (ℓ − 1) + 1 + s, byte by byte
        for i in 0..32 {
            let v = u16::from(ell_bytes[i]) + u16::from(s.as_bytes()[i]) + carry;
            sum[i] = v as u8;
            carry = v >> 8;
        }
        assert_eq!(carry, 0, "s + ℓ < 2^253 always fits in 32 bytes");
        let mut bytes = signature.to_bytes();
        bytes[32..].copy_from_slice(&sum);
        let malleated = Signature::from_bytes(&bytes);
        assert_eq!(both(&key, message, &signature), (true, true));
        assert_eq!(both(&key, message, &malleated), (false, false));
    }

    #[test]
    fn weak_keys_are_not_prepared() {
        for point in EIGHT_TORSION {
            let key = VerifyingKey::from_bytes(point.compress().as_bytes()).expect("decodes");
            assert!(StrictKey::new(&key).is_none());
        }
        let strong = VerifyingKey::from_bytes(ED25519_BASEPOINT_POINT.compress().as_bytes())
            .expect("the base point decodes");
        assert!(StrictKey::new(&strong).is_some());
    }

    proptest! {
        #[test]
        fn agrees_with_verify_strict_on_valid_and_mutated_signatures(
            seed in any::<u8>(),
            message in proptest::collection::vec(any::<u8>(), 0..300),
            flip in proptest::option::of((0usize..64 * 8 + 8, any::<bool>())),
        ) {
            let signer = signing_key(seed);
            let key = signer.verifying_key();
            let signature = signer.sign(&message);
            let (mut sig_bytes, mut msg) = (signature.to_bytes(), message);
            if let Some((bit, in_message)) = flip {
                if in_message && !msg.is_empty() {
                    let i = bit % (msg.len() * 8);
                    msg[i / 8] ^= 1 << (i % 8);
                } else {
                    let i = bit % (64 * 8);
                    sig_bytes[i / 8] ^= 1 << (i % 8);
                }
            }
            let candidate = Signature::from_bytes(&sig_bytes);
            let (ours, dalek) = both(&key, &msg, &candidate);
            prop_assert_eq!(ours, dalek);
            if flip.is_none() {
                prop_assert!(ours);
            }
        }

        #[test]
        fn verify_each_gives_each_single_verdict_in_order(
            seed in any::<u8>(),
            mutations in proptest::collection::vec(
                proptest::option::of((0usize..64 * 8, any::<bool>())),
                0..24,
            ),
        ) {
            let signer = signing_key(seed);
            let strict = StrictKey::new(&signer.verifying_key()).expect("not weak");
            let mut items = Vec::new();
            for (i, mutation) in mutations.iter().enumerate() {
                let mut message = format!("message {i}").into_bytes();
                let mut sig = signer.sign(&message).to_bytes();
                match mutation {
                    None => {}
                    Some((bit, true)) => {
                        let at = bit % message.len();
                        message[at] ^= 1;
                    }
                    Some((bit, false)) => sig[bit / 8] ^= 1 << (bit % 8),
                }
                items.push((message, Signature::from_bytes(&sig)));
            }
            let each = strict.verify_each(items.iter().map(|(m, s)| (m.as_slice(), s)));
            let single: Vec<bool> = items.iter().map(|(m, s)| strict.verify(m, s)).collect();
            prop_assert_eq!(&each, &single);
            for (verdict, mutation) in each.iter().zip(&mutations) {
                if mutation.is_none() {
                    prop_assert!(*verdict);
                }
            }
        }

        #[test]
        fn agrees_with_verify_strict_on_arbitrary_bytes(
            seed in any::<u8>(),
            r in any::<[u8; 32]>(),
            s in any::<[u8; 32]>(),
        ) {
            let key = signing_key(seed).verifying_key();
            let mut bytes = [0u8; 64];
            bytes[..32].copy_from_slice(&r);
            bytes[32..].copy_from_slice(&s);
            let candidate = Signature::from_bytes(&bytes);
            let (ours, dalek) = both(&key, b"m", &candidate);
            prop_assert_eq!(ours, dalek);
        }
    }
}
