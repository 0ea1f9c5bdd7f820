//! Session settings: what SET accepts, what SHOW reports, and what is refused.

use super::*;

#[test]
fn parameters_are_sorted_and_lowercase_for_lookup() {
    for pair in PARAMETERS.windows(2) {
        assert!(
            pair[0].name < pair[1].name,
            "{} before {}",
            pair[0].name,
            pair[1].name
        );
    }
    assert!(
        PARAMETERS
            .iter()
            .all(|p| p.name == p.name.to_ascii_lowercase())
    );
}

#[test]
fn set_show_and_reset_follow_postgresql() {
    let mut settings = Settings::new(&SessionDefaults::default());
    assert_eq!(
        settings.set("DateStyle", "ISO, DMY"),
        Ok(Some(("DateStyle".to_owned(), "ISO, DMY".to_owned())))
    );
    assert_eq!(settings.get("datestyle").as_deref(), Ok("ISO, DMY"));
    assert_eq!(
        settings.set("extra_float_digits", "3"),
        Ok(Some(("extra_float_digits".to_owned(), "3".to_owned())))
    );
    assert_eq!(settings.set("statement_timeout", "1.5s"), Ok(None));
    assert_eq!(settings.get("statement_timeout").as_deref(), Ok("1500"));
    assert_eq!(
        settings.statement_timeout(),
        Some(Duration::from_millis(1500))
    );
    assert_eq!(settings.set("jit", "OFF"), Ok(None));
    assert_eq!(settings.set("myapp.tenant", "42"), Ok(None));
    assert_eq!(settings.get("MyApp.Tenant").as_deref(), Ok("42"));
    assert_eq!(settings.reset("statement_timeout"), Ok(None));
    assert_eq!(settings.statement_timeout(), None);
    settings.reset_all();
    assert_eq!(settings.get("datestyle").as_deref(), Ok("ISO, MDY"));
}

#[test]
fn refusals_carry_postgresql_sqlstates() {
    let mut settings = Settings::new(&SessionDefaults::default());
    let cases = [
        ("no_such_parameter", "1", "42704"),
        ("server_version", "9.6", "55P02"),
        ("extra_float_digits", "7", "22023"),
        ("statement_timeout", "soon", "22023"),
        ("bytea_output", "base64", "22023"),
        ("transaction_read_only", "off", "25006"),
        ("default_transaction_read_only", "false", "25006"),
        ("standard_conforming_strings", "off", "25006"),
    ];
    for (name, value, code) in cases {
        let error = settings.set(name, value).expect_err(name);
        assert_eq!(error.code(), code, "SET {name} = {value}: {error}");
    }
    assert_eq!(settings.set("transaction_read_only", "on"), Ok(None));
    assert_eq!(settings.get("nope").map_err(|e| e.code()), Err("42704"));
}

#[test]
fn gateway_defaults_and_startup_options_are_what_reset_returns_to() {
    let defaults = SessionDefaults {
        statement_timeout: Some(Duration::from_secs(30)),
        idle_session_timeout: None,
    };
    let mut settings = Settings::new(&defaults);
    settings.apply_startup([
        ("application_name", "psql"),
        ("user", "alice"),
        ("bogus", "x"),
    ]);
    assert_eq!(settings.get("application_name").as_deref(), Ok("psql"));
    settings.set("statement_timeout", "0").unwrap();
    settings.set("application_name", "other").unwrap();
    settings.reset_all();
    assert_eq!(settings.statement_timeout(), Some(Duration::from_secs(30)));
    assert_eq!(settings.get("application_name").as_deref(), Ok("psql"));
}

#[test]
fn search_path_is_split_and_unquoted() {
    let mut settings = Settings::new(&SessionDefaults::default());
    assert_eq!(settings.search_path(), ["$user", "public"]);
    settings
        .set("search_path", "Shop, \"Mixed Case\",  docs")
        .unwrap();
    assert_eq!(settings.search_path(), ["shop", "Mixed Case", "docs"]);
}

#[test]
fn durations_parse_as_postgresql_writes_them() {
    let cases = [
        ("0", Some(0)),
        ("250", Some(250)),
        ("250ms", Some(250)),
        ("2s", Some(2000)),
        ("2 s", Some(2000)),
        ("1.5min", Some(90_000)),
        ("1h", Some(3_600_000)),
        ("-1", None),
        ("1 fortnight", None),
        ("", None),
    ];
    for (text, expected) in cases {
        assert_eq!(parse_milliseconds(text), expected, "{text:?}");
    }
}
