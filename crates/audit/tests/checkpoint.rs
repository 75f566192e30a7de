//! Signed notes and checkpoints: interoperability with the Go
//! `sumdb/note` test vector, and a clear error for every malformation.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "integration tests fail loudly"
)]

use gatehouse_audit::checkpoint::{self, CheckpointError};
use gatehouse_audit::{
    Checkpoint, Ed25519Signer, Hash, KeyId, KeyName, NoteError, SignedNote, Signer, VerifierKey,
    empty_root, leaf_hash,
};

// The example key and note of golang.org/x/mod/sumdb/note.
const GO_VERIFIER: &str = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
const GO_SIGNER: &str =
    "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";
const GO_TEXT: &str = "If you think cryptography is the answer to your problem,\n\
                       then you don't know what your problem is.\n";
const GO_SIG: &str = "— PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n";

fn go_note() -> String {
    format!("{GO_TEXT}\n{GO_SIG}")
}

fn name(text: &str) -> KeyName {
    KeyName::parse(text).unwrap()
}

#[test]
fn go_note_verifies_and_keys_round_trip() {
    let key = VerifierKey::parse(GO_VERIFIER).unwrap();
    assert_eq!(key.to_string(), GO_VERIFIER);
    assert_eq!(key.key_id(), KeyId(0xc74f20a3));
    let note = SignedNote::parse(&go_note()).unwrap();
    assert_eq!(note.text(), GO_TEXT);
    assert_eq!(note.verify(std::slice::from_ref(&key)).unwrap().len(), 1);
    assert_eq!(note.to_string(), go_note());

    let signer = Ed25519Signer::parse(GO_SIGNER).unwrap();
    assert_eq!(signer.to_signer_key().as_str(), GO_SIGNER);
    assert_eq!(signer.verifier_key(), key);
    assert!(
        !format!("{signer:?}").contains("AYEK"),
        "Debug must not show the key"
    );
}

#[tokio::test]
async fn signing_reproduces_the_go_note_byte_for_byte() {
    let signer = Ed25519Signer::parse(GO_SIGNER).unwrap();
    let mut note = SignedNote::new(GO_TEXT).unwrap();
    note.sign(&signer).await.unwrap();
    assert_eq!(note.to_string(), go_note());
}

#[test]
fn malformed_keys_are_rejected_with_reasons() {
    let cases: &[(&str, NoteError)] = &[
        ("PeterNeumann", NoteError::VerifierKeyShape),
        ("PeterNeumann+c74f20a3", NoteError::VerifierKeyShape),
        (
            "PeterNeumann+c74f20a4+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
            NoteError::KeyIdMismatch {
                stated: KeyId(0xc74f20a4),
                computed: KeyId(0xc74f20a3),
            },
        ),
        (
            "PeterNeumann+c74f20a+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
            NoteError::VerifierKeyShape,
        ),
        ("PeterNeumann+c74f20a3+!!!", NoteError::KeyBase64),
        (
            "PeterNeumann+c74f20a3+AhpC2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
            NoteError::KeyType(0x02),
        ),
        ("PeterNeumann+c74f20a3+ARpc", NoteError::KeyLength(2)),
        (
            "Peter Neumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
            NoteError::KeyName("Peter Neumann".into()),
        ),
        (
            "+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
            NoteError::KeyName(String::new()),
        ),
    ];
    for (text, expected) in cases {
        assert_eq!(VerifierKey::parse(text).as_ref(), Err(expected), "{text}");
    }
    // A small-order point (the identity) is not a usable key.
    let mut identity = [0u8; 32];
    identity[0] = 1;
    assert_eq!(
        VerifierKey::from_public_key(name("weak"), &identity),
        Err(NoteError::WeakKey)
    );
    assert_eq!(
        Ed25519Signer::parse(GO_VERIFIER).map(|_| ()),
        Err(NoteError::SignerKeyShape)
    );
}

#[test]
fn malformed_notes_are_rejected_with_reasons() {
    let sig = GO_SIG.trim_end_matches('\n');
    let cases: Vec<(String, NoteError)> = vec![
        (GO_TEXT.to_owned(), NoteError::MissingSeparator),
        (format!("{GO_TEXT}\n"), NoteError::NoSignatures),
        (
            format!("{GO_TEXT}\n{sig}"),
            NoteError::SignaturesNotTerminated,
        ),
        (
            format!("{GO_TEXT}\n- PeterNeumann AAAA\n"),
            NoteError::SignatureLineStart { line: 1 },
        ),
        (
            format!("{GO_TEXT}\n{GO_SIG}— PeterNeumann\n"),
            NoteError::SignatureLineShape { line: 2 },
        ),
        (
            format!("{GO_TEXT}\n— PeterNeumann not-base64!\n"),
            NoteError::SignatureBase64 { line: 1 },
        ),
        (
            format!("{GO_TEXT}\n— PeterNeumann AAAA\n"),
            NoteError::SignatureTooShort { line: 1 },
        ),
        (
            format!("{GO_TEXT}\n— Peter+Neumann AAAAAAA=\n"),
            NoteError::KeyName("Peter+Neumann".into()),
        ),
        (
            format!("bell\u{7}\n\n{GO_SIG}"),
            NoteError::ControlCharacter(7),
        ),
        (
            format!("tab\there\n\n{GO_SIG}"),
            NoteError::ControlCharacter(9),
        ),
    ];
    for (text, expected) in cases {
        assert_eq!(SignedNote::parse(&text), Err(expected), "{text:?}");
    }
    let too_many = format!("{GO_TEXT}\n{}", GO_SIG.repeat(65));
    assert_eq!(
        SignedNote::parse(&too_many),
        Err(NoteError::TooManySignatures)
    );
    assert_eq!(
        SignedNote::new("no newline"),
        Err(NoteError::TextNotTerminated)
    );
}

#[test]
fn note_verification_follows_the_spec() {
    let key = VerifierKey::parse(GO_VERIFIER).unwrap();
    // An unknown key (other name, or same name with another ID) is ignored.
    let other = Ed25519Signer::from_seed(name("Other"), &[7; 32]).verifier_key();
    let note = SignedNote::parse(&go_note()).unwrap();
    assert!(matches!(
        note.verify(std::slice::from_ref(&other)),
        Err(NoteError::NoTrustedSignature(names)) if names.contains("PeterNeumann c74f20a3")
    ));
    // A known key's signature over different text rejects the note.
    let forged = go_note().replace("answer", "question");
    assert_eq!(
        SignedNote::parse(&forged)
            .unwrap()
            .verify(std::slice::from_ref(&key)),
        Err(NoteError::BadSignature {
            name: "PeterNeumann".into(),
            key_id: KeyId(0xc74f20a3),
        })
    );
    // Extra signatures by unknown keys do not matter.
    let extra = format!("{}— Other AAAAAAAAAAAA\n", go_note());
    assert_eq!(
        SignedNote::parse(&extra)
            .unwrap()
            .verify(&[key, other])
            .unwrap()
            .len(),
        1
    );
}

/// The example of c2sp.org/tlog-checkpoint parses (its key is not ours).
#[test]
fn c2sp_example_checkpoint_parses() {
    let text = "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n\n\
                — example.com/behind-the-sofa Az3grlgtzPICa5OS8npVmf1Myq/5IZniMp+ZJurmRDeOoRDe4URYN7u5/Zhcyv2q1gGzGku9nTo+zyWE+xeMcTOAYQ8=\n";
    let note = SignedNote::parse(text).unwrap();
    let cp = Checkpoint::parse_body(note.text()).unwrap();
    assert_eq!(cp.origin(), "example.com/behind-the-sofa");
    assert_eq!(cp.size(), 20852163);
    assert_eq!(cp.body(), note.text());
    assert_eq!(note.to_string(), text);
}

#[tokio::test]
async fn checkpoints_sign_and_open() {
    let origin = "gatehouse.example/audit/acme";
    let signer = Ed25519Signer::generate(name(origin)).unwrap();
    let keys = [signer.verifier_key()];
    let root = leaf_hash(b"entry");
    let cp = Checkpoint::new(origin, 1, root).unwrap();
    let note = cp.sign(&signer).await.unwrap().to_string();
    assert!(note.starts_with(&format!("{origin}\n1\n{}\n\n— {origin} ", root.to_base64())));
    let (opened, _) = checkpoint::open(&note, &keys, origin).unwrap();
    assert_eq!(opened, cp);

    // Another log's checkpoint, signed by the same key, is refused.
    let other = Checkpoint::new("gatehouse.example/audit/globex", 1, root).unwrap();
    let other_note = other.sign(&signer).await.unwrap().to_string();
    assert_eq!(
        checkpoint::open(&other_note, &keys, origin).map(|_| ()),
        Err(CheckpointError::WrongOrigin {
            expected: origin.into(),
            found: "gatehouse.example/audit/globex".into()
        })
    );
    // An altered size fails the signature before anything else is read.
    let altered = note.replacen("\n1\n", "\n2\n", 1);
    assert!(matches!(
        checkpoint::open(&altered, &keys, origin),
        Err(CheckpointError::Signature(NoteError::BadSignature { .. }))
    ));
    // Extensions are signed and kept.
    let ext = Checkpoint::new(origin, 0, empty_root())
        .unwrap()
        .with_extension("issued 2026-11-21T10:00:00Z")
        .unwrap();
    let ext_note = ext.sign(&signer).await.unwrap().to_string();
    assert_eq!(checkpoint::open(&ext_note, &keys, origin).unwrap().0, ext);
}

#[test]
fn malformed_checkpoint_bodies_are_rejected_with_reasons() {
    let root = Hash::from_bytes([9; 32]).to_base64();
    let cases: Vec<(String, CheckpointError)> = vec![
        (
            format!("o\n1\n{root}"),
            CheckpointError::Note(NoteError::TextNotTerminated),
        ),
        ("o\n1\n".to_owned(), CheckpointError::TooFewLines(2)),
        (format!("\n1\n{root}\n"), CheckpointError::Origin),
        (
            format!("o\n01\n{root}\n"),
            CheckpointError::Size("01".into()),
        ),
        (
            format!("o\n-1\n{root}\n"),
            CheckpointError::Size("-1".into()),
        ),
        (
            format!("o\n\n{root}\n"),
            CheckpointError::Size(String::new()),
        ),
        (
            format!("o\n18446744073709551616\n{root}\n"),
            CheckpointError::Size("18446744073709551616".into()),
        ),
        (
            "o\n1\nAAAA\n".to_owned(),
            CheckpointError::Root(gatehouse_audit::HashError::Length(3)),
        ),
        (
            "o\n1\n%%%\n".to_owned(),
            CheckpointError::Root(gatehouse_audit::HashError::Base64),
        ),
        (
            format!("o\n1\n{root}\next\n\n"),
            CheckpointError::EmptyExtension(2),
        ),
    ];
    for (text, expected) in cases {
        assert_eq!(Checkpoint::parse_body(&text), Err(expected), "{text:?}");
    }
    assert_eq!(
        Checkpoint::new("", 0, empty_root()),
        Err(CheckpointError::Origin)
    );
    assert!(
        Checkpoint::new("o", 0, empty_root())
            .unwrap()
            .with_extension("two\nlines")
            .is_err()
    );
}
