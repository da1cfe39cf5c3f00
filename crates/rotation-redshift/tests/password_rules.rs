//! Engine password rules (Redshift): every policy the environment can configure either fails to
//! read with a typed error, or makes the local generator give passwords the engine accepts; and
//! createSecret stores nothing when the generator returns a password the engine would refuse.

use std::collections::{HashMap, HashSet};

use rotation_core::policy::PUNCTUATION;
use rotation_core::{
    CharClass, LocalSecretStore, PasswordDefaults, PasswordPolicy, PolicyError, SecretStore,
};
use secrecy::ExposeSecret;

const RS: &PasswordDefaults = &rotation_redshift::PROFILE.password;
/// What Redshift never accepts.
const NEVER: &str = "'\"\\/@ ";

const SWITCHES: [&str; 5] = [
    "EXCLUDE_NUMBERS",
    "EXCLUDE_PUNCTUATION",
    "EXCLUDE_UPPERCASE",
    "EXCLUDE_LOWERCASE",
    "REQUIRE_EACH_INCLUDED_TYPE",
];
const SWITCH_VALUES: [Option<&str>; 3] = [None, Some("true"), Some("false")];
const LENGTHS: [&str; 6] = ["8", "9", "32", "64", "7", "65"];

/// Passwords drawn for every combination, and for each distinct policy the first time it is seen
/// (many combinations read to the same policy, since Redshift ignores the class switches).
const PER_COMBINATION: usize = 3;
const PER_POLICY: usize = 500;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Exclude {
    Unset,
    Empty,
    OmitsForbidden,
    AllDigits,
    AllButOneDigit,
    AllUpper,
}

impl Exclude {
    const ALL: [Exclude; 6] = [
        Exclude::Unset,
        Exclude::Empty,
        Exclude::OmitsForbidden,
        Exclude::AllDigits,
        Exclude::AllButOneDigit,
        Exclude::AllUpper,
    ];

    fn value(self) -> Option<String> {
        match self {
            Exclude::Unset => None,
            Exclude::Empty => Some(String::new()),
            Exclude::OmitsForbidden => Some(":;`~".into()),
            Exclude::AllDigits => Some("0123456789".into()),
            Exclude::AllButOneDigit => Some("012345689".into()),
            Exclude::AllUpper => Some(('A'..='Z').collect()),
        }
    }
}

#[tokio::test(flavor = "current_thread")]
async fn every_redshift_configuration_errors_or_generates_acceptable_passwords() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalSecretStore::new(dir.path().join("unused.json"));
    let (mut combinations, mut errors, mut generated) = (0usize, 0usize, 0usize);
    let mut sampled: HashSet<String> = HashSet::new();

    for n in 0..3usize.pow(SWITCHES.len() as u32) {
        let switches: Vec<(&str, Option<&str>)> = SWITCHES
            .iter()
            .enumerate()
            .map(|(i, key)| (*key, SWITCH_VALUES[n / 3usize.pow(i as u32) % 3]))
            .collect();
        for exclude in Exclude::ALL {
            for length in LENGTHS {
                combinations += 1;
                let mut env: HashMap<&str, String> = switches
                    .iter()
                    .filter_map(|(k, v)| v.map(|v| (*k, v.to_string())))
                    .collect();
                if let Some(v) = exclude.value() {
                    env.insert("EXCLUDE_CHARACTERS", v);
                }
                env.insert("PASSWORD_LENGTH", length.to_string());
                let what = format!("{env:?}");
                let read = PasswordPolicy::read(RS, |k| env.get(k).cloned());

                let len: u32 = length.parse().unwrap();
                let expected_error = if !(8..=64).contains(&len) {
                    Some(PolicyError::OutOfRange {
                        value: len.into(),
                        engine: "redshift",
                        min: 8,
                        max: 64,
                    })
                } else {
                    let class = match exclude {
                        Exclude::AllDigits => Some(CharClass::Digit),
                        Exclude::AllUpper => Some(CharClass::Upper),
                        _ => None,
                    };
                    class.map(|class| PolicyError::RequiredClassExcluded {
                        engine: "redshift",
                        class,
                        variable: "EXCLUDE_CHARACTERS",
                    })
                };
                if let Some(expected) = expected_error {
                    assert_eq!(read.unwrap_err(), expected, "{what}");
                    errors += 1;
                    continue;
                }
                let (policy, notes) = read.unwrap_or_else(|e| panic!("{what}: {e}"));

                // What is sent.
                assert_eq!(policy.length, len, "{what}");
                assert!(policy.require_each_included_type, "{what}");
                assert_eq!(
                    (
                        policy.exclude_numbers,
                        policy.exclude_uppercase,
                        policy.exclude_lowercase
                    ),
                    (None, None, None),
                    "{what}"
                );
                assert_eq!(
                    policy.exclude_punctuation,
                    env.get("EXCLUDE_PUNCTUATION").map(String::as_str) == Some("true"),
                    "{what}"
                );
                for c in NEVER.chars().filter(char::is_ascii_graphic) {
                    assert!(policy.exclude_characters.contains(c), "{c:?}: {what}");
                }

                // A note for every override and every ignored variable, and nothing else.
                let mut expected_notes = Vec::new();
                if !matches!(exclude, Exclude::Unset) {
                    expected_notes.push("EXCLUDE_CHARACTERS");
                }
                if env.get("REQUIRE_EACH_INCLUDED_TYPE").map(String::as_str) == Some("false") {
                    expected_notes.push("REQUIRE_EACH_INCLUDED_TYPE");
                }
                for key in ["EXCLUDE_NUMBERS", "EXCLUDE_UPPERCASE", "EXCLUDE_LOWERCASE"] {
                    if env.contains_key(key) {
                        expected_notes.push(key);
                    }
                }
                assert_eq!(notes.len(), expected_notes.len(), "{what}: {notes:?}");
                for key in expected_notes {
                    assert!(
                        notes.iter().any(|n| n.starts_with(key)),
                        "{key}: {what}: {notes:?}"
                    );
                }

                let draws = if sampled.insert(format!("{policy:?}")) {
                    PER_POLICY
                } else {
                    PER_COMBINATION
                };
                for _ in 0..draws {
                    let password = store.random_password(&policy).await.unwrap();
                    let pw = password.expose_secret();
                    assert_eq!(RS.check(pw), Ok(()), "{what}");
                    assert_eq!(pw.chars().count(), len as usize, "{what}");
                    assert!(!pw.chars().any(|c| NEVER.contains(c)), "{what}");
                    assert!(
                        !pw.chars().any(|c| policy.exclude_characters.contains(c)),
                        "{what}"
                    );
                    if policy.exclude_punctuation {
                        assert!(!pw.chars().any(|c| PUNCTUATION.contains(c)), "{what}");
                    }
                    generated += 1;
                }
            }
        }
    }
    assert_eq!(combinations, 243 * 6 * 6);
    // 7 and 65 for every combination, and all digits or all upper case excluded otherwise.
    assert_eq!(errors, 243 * 6 * 2 + 243 * 2 * 4);
    assert!(generated >= 10_000, "{generated}");
    // EXCLUDE_PUNCTUATION true or not, 4 usable EXCLUDE_CHARACTERS, 4 lengths: the class
    // switches and REQUIRE_EACH_INCLUDED_TYPE change nothing that is sent.
    assert_eq!(sampled.len(), 2 * 4 * 4, "{sampled:?}");
}

mod create_secret {
    use rotation_core::testing::RecordingStore;
    use rotation_core::testing::{FakeDatabase, FakeRotator, Operation};
    use rotation_core::{
        EngineProfile, ErrorCategory, LocalSecretStore, PasswordPolicy, PasswordRuleError,
        Rotation, RotationError, RotationEvent, SecretStore, Stage, StageMove, Step, StepOutcome,
        Strategy, VersionSelector, error_chain,
    };
    use secrecy::SecretString;

    const T1: &str = "11111111-1111-4111-8111-111111111111";
    const T2: &str = "22222222-2222-4222-8222-222222222222";

    static REDSHIFT_LIKE: EngineProfile = EngineProfile {
        name: "fake-redshift",
        engines: &["fake"],
        password: rotation_redshift::PROFILE.password,
        max_username_bytes: Some(63),
        default_port: Some(5432),
        single_user_master: false,
        advice: rotation_core::RightsAdvice::GENERIC,
    };

    const INITIAL: &str = "Initial-Passw0rd";

    async fn setup(
        password: &'static str,
    ) -> (
        tempfile::TempDir,
        LocalSecretStore,
        FakeDatabase,
        Rotation<RecordingStore<LocalSecretStore>, FakeRotator>,
        RecordingStore<LocalSecretStore>,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let local = LocalSecretStore::new(dir.path().join("secrets.json"));
        let value = format!(
            r#"{{"engine": "fake", "host": "db", "username": "app", "password": "{INITIAL}"}}"#
        );
        local
            .create_secret("app", &SecretString::from(value))
            .await
            .unwrap();
        let db = FakeDatabase::new();
        db.add_user("app", &SecretString::from(INITIAL));
        let store = RecordingStore::new(local.clone());
        store.generate_with(password);
        let rotation = Rotation::new(
            store.clone(),
            FakeRotator::new(db.clone(), Strategy::SingleUser).with_profile(&REDSHIFT_LIKE),
            PasswordPolicy::defaults(&rotation_redshift::PROFILE.password),
        );
        (dir, local, db, rotation, store)
    }

    fn assert_rejected(e: &RotationError, password: &str) -> PasswordRuleError {
        let RotationError::PasswordRejected { source, engine, .. } = e else {
            panic!("{e:?}");
        };
        assert_eq!(*engine, "redshift");
        assert_eq!(e.kind(), "GeneratedPasswordRejected");
        assert_eq!(e.category(), ErrorCategory::Secret);
        let shown = format!("{} {e:?}", error_chain(e));
        assert!(!shown.contains(password), "{shown}");
        source.clone()
    }

    #[tokio::test]
    async fn a_rejected_password_fails_create_secret_and_stores_nothing() {
        for (bad, rule) in [
            ("all-lower-case-1", "upper"),
            ("NoDigitsHere!", "digit"),
            ("Passw0rd@Home", "forbidden"),
            ("Pass w0rd", "forbidden"),
            ("Sh0rt", "length"),
        ] {
            let (_dir, local, db, rotation, store) = setup(bad).await;

            // As Secrets Manager invokes it: RotateSecret made a value-less AWSPENDING stub.
            local.start_rotation("app", T1).await.unwrap();
            let e = rotation
                .handle(&RotationEvent::new(Step::CreateSecret, "app", T1))
                .await
                .unwrap_err();
            let source = assert_rejected(&e, bad);
            let matches_rule = match rule {
                "upper" => matches!(source, PasswordRuleError::MissingClass { .. }),
                "digit" => matches!(source, PasswordRuleError::MissingClass { .. }),
                "forbidden" => matches!(source, PasswordRuleError::Forbidden { .. }),
                _ => matches!(source, PasswordRuleError::Length { length: 5, .. }),
            };
            assert!(matches_rule, "{bad}: {source:?}");
            assert_eq!(store.count(Operation::GetRandomPassword), 1);
            assert_eq!(store.count(Operation::PutSecretValue), 0);
            assert!(store.puts().is_empty());
            let stub = local
                .get_value("app", VersionSelector::version_at(T1, Stage::Pending))
                .await
                .unwrap_err();
            assert!(stub.is_not_found(), "{stub:?}");

            // The in-process driver: no version at all is made.
            local
                .update_stage(
                    "app",
                    StageMove {
                        stage: Stage::Pending,
                        move_to: None,
                        remove_from: Some(T1),
                    },
                )
                .await
                .unwrap();
            let versions_before = local.list_versions("app").await.unwrap().len();
            let e = rotation.rotate("app").await.unwrap_err();
            assert_rejected(&e, bad);
            assert_eq!(store.count(Operation::PutSecretValue), 0);
            assert_eq!(
                local.list_versions("app").await.unwrap().len(),
                versions_before
            );
            assert_eq!(
                local.describe("app").await.unwrap().rotation_in_flight(),
                None
            );
            assert_eq!(db.password_changes(), 0);
            assert!(db.accepts("app", INITIAL));
        }
    }

    #[tokio::test]
    async fn an_acceptable_password_is_stored() {
        let (_dir, local, _db, rotation, store) = setup("Good-Passw0rd").await;
        local.start_rotation("app", T2).await.unwrap();
        let outcome = rotation
            .handle(&RotationEvent::new(Step::CreateSecret, "app", T2))
            .await
            .unwrap();
        assert_eq!(outcome, StepOutcome::PendingCreated);
        assert_eq!(store.count(Operation::PutSecretValue), 1);
    }
}
