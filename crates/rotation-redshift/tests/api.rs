//! Redshift-managed admin secrets: the provisioned path through moto's Redshift API, the
//! serverless path (which moto does not emulate) through a wrapped client that pages like the
//! real one, well past AWS's function's single page of 100 (W12).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use rotation_core::{DatabaseSecret, DbName, ErrorKind, Rotator};
use rotation_postgres::PgConfig;
use rotation_postgres::master::Endpoint;
use rotation_redshift::api::{
    BoxFuture, Directory, Namespace, Page, Workgroup, managed_admin_endpoint,
};
use rotation_redshift::{RedshiftRotator, SdkDirectory};
use rotation_testkit::Moto;
use secrecy::SecretString;
use serde_json::{Value, json};

fn parse(v: &Value) -> DatabaseSecret {
    DatabaseSecret::parse(&SecretString::from(v.to_string())).unwrap()
}

/// A serverless account with `namespaces` namespaces and as many workgroups, listed `per_page`
/// at a time, counting calls.
#[derive(Debug)]
struct Account {
    namespaces: usize,
    per_page: usize,
    calls: AtomicUsize,
    endless: bool,
}

impl Account {
    fn page<T>(&self, token: Option<String>, item: impl Fn(usize) -> T) -> Page<T> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if self.endless {
            return Page {
                items: vec![],
                next_token: Some("again".into()),
            };
        }
        let start: usize = token.map_or(0, |t| t.parse().unwrap());
        let end = (start + self.per_page).min(self.namespaces);
        Page {
            items: (start..end).map(item).collect(),
            next_token: (end < self.namespaces).then(|| end.to_string()),
        }
    }
}

impl Directory for Account {
    fn cluster_endpoint<'a>(
        &'a self,
        cluster_id: &'a str,
    ) -> BoxFuture<'a, Result<Endpoint, rotation_core::EngineError>> {
        Box::pin(async move {
            Ok(Endpoint {
                host: format!("{cluster_id}.example"),
                port: 5439,
                engine: "redshift".into(),
            })
        })
    }
    fn namespaces(
        &self,
        next_token: Option<String>,
    ) -> BoxFuture<'_, Result<Page<Namespace>, rotation_core::EngineError>> {
        Box::pin(async move {
            Ok(self.page(next_token, |i| Namespace {
                arn: format!("arn:aws:redshift-serverless:us-east-1:123456789012:namespace/ns-{i}"),
                name: format!("ns{i}"),
            }))
        })
    }
    fn workgroups(
        &self,
        next_token: Option<String>,
    ) -> BoxFuture<'_, Result<Page<Workgroup>, rotation_core::EngineError>> {
        Box::pin(async move {
            // Workgroup i serves namespace (namespaces - 1 - i): the match is on the last page.
            let n = self.namespaces;
            Ok(self.page(next_token, |i| Workgroup {
                name: format!("wg{i}"),
                namespace_name: format!("ns{}", n - 1 - i),
                host: Some(format!(
                    "wg{i}.123456789012.us-east-1.redshift-serverless.amazonaws.com"
                )),
                port: Some(5439),
            }))
        })
    }
}

#[tokio::test]
async fn serverless_admin_secrets_are_found_on_any_page() {
    let account = Account {
        namespaces: 250,
        per_page: 100,
        calls: AtomicUsize::new(0),
        endless: false,
    };
    let tags = vec![
        ("Owner".to_string(), "team".to_string()),
        (
            "AWS:Redshift-Serverless:NamespaceArn".to_string(),
            "arn:aws:redshift-serverless:us-east-1:123456789012:namespace/ns-240".to_string(),
        ),
    ];
    let ep = managed_admin_endpoint(&account, &tags).await.unwrap();
    // Namespace 240 is on the third page of namespaces; its workgroup (wg9) on the first page
    // of workgroups.
    assert_eq!(
        ep,
        Endpoint {
            host: "wg9.123456789012.us-east-1.redshift-serverless.amazonaws.com".into(),
            port: 5439,
            engine: "redshift".into()
        }
    );
    assert_eq!(account.calls.load(Ordering::SeqCst), 4);

    // A workgroup on the last page.
    let tags = vec![(
        "aws:redshift-serverless:namespacearn".to_string(),
        "arn:aws:redshift-serverless:us-east-1:123456789012:namespace/ns-3".to_string(),
    )];
    let ep = managed_admin_endpoint(&account, &tags).await.unwrap();
    assert!(ep.host.starts_with("wg246."), "{ep:?}");

    // Unknown namespace: every page read, then a clear error.
    let tags = vec![(
        "aws:redshift-serverless:namespacearn".to_string(),
        "arn:aws:redshift-serverless:us-east-1:123456789012:namespace/nope".to_string(),
    )];
    let e = managed_admin_endpoint(&account, &tags).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    assert!(e.to_string().contains("found no namespace"), "{e}");

    // An API that never stops paging is cut off.
    let endless = Account {
        namespaces: 1,
        per_page: 1,
        calls: AtomicUsize::new(0),
        endless: true,
    };
    let e = managed_admin_endpoint(&endless, &tags).await.unwrap_err();
    assert!(e.to_string().contains("more than 1000 pages"), "{e}");

    // No tag, an over-long ARN.
    let e = managed_admin_endpoint(&account, &[("x".into(), "y".into())])
        .await
        .unwrap_err();
    assert!(e.to_string().contains("no host and no"), "{e}");
    let long = vec![(
        "aws:redshift:primaryclusterarn".to_string(),
        format!("arn:{}", "x".repeat(300)),
    )];
    let e = managed_admin_endpoint(&account, &long).await.unwrap_err();
    assert!(e.to_string().contains("maximum length of 256"), "{e}");
}

#[tokio::test]
async fn the_rotator_completes_a_managed_admin_secret_in_the_childs_database() {
    let account = Arc::new(Account {
        namespaces: 3,
        per_page: 100,
        calls: AtomicUsize::new(0),
        endless: false,
    });
    let r = RedshiftRotator::alternating_users(PgConfig::default()).with_directory(account);
    let master = parse(&json!({"username": "admin", "password": "x"}));
    let current = parse(
        &json!({"engine": "redshift", "host": "h", "username": "app", "password": "y", "dbname": "sales"}),
    );
    let tags = vec![(
        "aws:redshift:primaryclusterarn".to_string(),
        "arn:aws:redshift:us-east-1:123456789012:cluster:analytics".to_string(),
    )];
    let m = r
        .resolve_master(master, &current, Some(&tags))
        .await
        .unwrap();
    assert_eq!(m.host(), Some("analytics.example"));
    assert_eq!(m.port(), Some(5439));
    assert_eq!(m.engine(), Some("redshift"));
    assert_eq!(m.dbname(), DbName::Name("sales"));
    // Without the API: a clear error, not a guess.
    let bare = RedshiftRotator::alternating_users(PgConfig::default());
    let e = bare
        .resolve_master(
            parse(&json!({"username": "admin", "password": "x"})),
            &current,
            Some(&tags),
        )
        .await
        .unwrap_err();
    assert!(e.to_string().contains("need the Redshift API"), "{e}");
}

#[tokio::test]
async fn provisioned_clusters_resolve_through_the_redshift_api() {
    let moto = Moto::start().expect("start moto");
    let out = moto
        .python(
            "rs = boto3.client('redshift', **kw)\n\
             c = rs.create_cluster(ClusterIdentifier='analytics', NodeType='dc2.large', MasterUsername='admin', MasterUserPassword='Password1234', ClusterType='single-node')['Cluster']\n\
             c = rs.describe_clusters(ClusterIdentifier='analytics')['Clusters'][0]\n\
             print(json.dumps({'host': c['Endpoint']['Address'], 'port': c['Endpoint']['Port']}))\n",
        )
        .expect("create a Redshift cluster in moto");
    let cluster: Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    let directory = SdkDirectory::from_sdk_config(&moto.sdk_config().await);
    let tags = vec![(
        "aws:redshift:primaryclusterarn".to_string(),
        "arn:aws:redshift:us-east-1:123456789012:cluster:analytics".to_string(),
    )];
    let ep = managed_admin_endpoint(&directory, &tags).await.unwrap();
    assert_eq!(ep.host, cluster["host"].as_str().unwrap());
    assert_eq!(i64::from(ep.port), cluster["port"].as_i64().unwrap());
    assert_eq!(ep.engine, "redshift");
    let tags = vec![(
        "aws:redshift:primaryclusterarn".to_string(),
        "arn:aws:redshift:us-east-1:123456789012:cluster:missing".to_string(),
    )];
    let e = managed_admin_endpoint(&directory, &tags).await.unwrap_err();
    assert!(e.to_string().contains("DescribeClusters"), "{e}");
}
