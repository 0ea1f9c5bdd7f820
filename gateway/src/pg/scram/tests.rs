//! SCRAM-SHA-256 exchanges, good and bad, against RFC 7677's test vectors.

use super::*;

const CLIENT_FIRST: &str = "n,,n=user,r=rOprNGfwEbeRWgbNEkqO";
const SERVER_NONCE: &str = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
const SERVER_FIRST: &str =
    "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
const CLIENT_FINAL: &str = "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
const SERVER_FINAL: &str = "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=";

fn rfc_verifier() -> Verifier {
    let salt = STANDARD.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
    Verifier::derive("pencil", salt, 4096)
}

#[test]
fn the_rfc_7677_exchange_passes() {
    let (exchange, server_first) =
        Exchange::start_with_nonce(rfc_verifier(), CLIENT_FIRST.as_bytes(), SERVER_NONCE).unwrap();
    assert_eq!(server_first, SERVER_FIRST);
    assert_eq!(
        exchange.finish(CLIENT_FINAL.as_bytes()).unwrap(),
        SERVER_FINAL
    );
}

#[test]
fn a_verifier_in_postgresql_format_round_trips_and_authenticates() {
    let text = rfc_verifier().to_string();
    assert!(
        text.starts_with("SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$"),
        "{text}"
    );
    let parsed = Verifier::parse(&text).unwrap();
    assert_eq!(parsed, rfc_verifier());
    let (exchange, _) =
        Exchange::start_with_nonce(parsed, CLIENT_FIRST.as_bytes(), SERVER_NONCE).unwrap();
    assert_eq!(
        exchange.finish(CLIENT_FINAL.as_bytes()).unwrap(),
        SERVER_FINAL
    );
}

#[test]
fn wrong_passwords_unknown_users_and_bad_messages_fail() {
    let wrong = Verifier::derive(
        "pencils",
        STANDARD.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap(),
        4096,
    );
    let (exchange, _) =
        Exchange::start_with_nonce(wrong, CLIENT_FIRST.as_bytes(), SERVER_NONCE).unwrap();
    assert_eq!(
        exchange.finish(CLIENT_FINAL.as_bytes()),
        Err(ScramError::WrongProof)
    );

    let (exchange, _) = Exchange::start_with_nonce(
        Verifier::impossible(),
        CLIENT_FIRST.as_bytes(),
        SERVER_NONCE,
    )
    .unwrap();
    assert!(exchange.finish(CLIENT_FINAL.as_bytes()).is_err());

    let start =
        |first: &str| Exchange::start_with_nonce(rfc_verifier(), first.as_bytes(), "x").map(|_| ());
    assert_eq!(
        start("p=tls-server-end-point,,n=user,r=abc"),
        Err(ScramError::ChannelBinding)
    );
    assert_eq!(
        start("x,,n=user,r=abc"),
        Err(ScramError::Malformed("gs2 header"))
    );
    assert_eq!(
        start("n,,n=user"),
        Err(ScramError::Malformed("client nonce"))
    );

    let (exchange, _) =
        Exchange::start_with_nonce(rfc_verifier(), CLIENT_FIRST.as_bytes(), SERVER_NONCE).unwrap();
    let replayed = CLIENT_FINAL.replace("k0,p=", "k1,p=");
    assert_eq!(
        exchange.finish(replayed.as_bytes()),
        Err(ScramError::Malformed("nonce"))
    );

    for bad in [
        "SCRAM-SHA-256$x:abc$def:ghi",
        "SCRAM-SHA-256$4096:abc",
        "md5abc",
    ] {
        assert!(Verifier::parse(bad).is_none(), "{bad}");
    }
}
