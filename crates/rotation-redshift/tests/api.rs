//! Redshift-managed admin secrets: the provisioned path through moto's Redshift API, the
//! serverless path (which moto does not emulate) through a wrapped client that pages like the
//! real one, well past AWS's function's single page of 100 (W12).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use rotation_core::{DatabaseSecret, DbName, ErrorKind, Rotator};
use rotation_postgres::PgConfig;
use rotation_rds::master::Endpoint;
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

/// A local stand-in for the Redshift Serverless API (AWS JSON 1.1 over HTTP/1.1): 250
/// namespaces and 250 workgroups served 100 a page, so that the SDK client's request building
/// (`maxResults`, `nextToken`) and response mapping (`namespaceArn`, `endpoint.address/port`)
/// run for real.
async fn serve_serverless_api(listener: tokio::net::TcpListener, calls: Arc<AtomicUsize>) {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
    loop {
        let Ok((socket, _)) = listener.accept().await else {
            return;
        };
        let calls = calls.clone();
        tokio::spawn(async move {
            let mut reader = BufReader::new(socket);
            loop {
                let (mut target, mut length) = (String::new(), 0usize);
                let mut line = String::new();
                if reader.read_line(&mut line).await.unwrap_or(0) == 0 {
                    return;
                }
                loop {
                    line.clear();
                    reader.read_line(&mut line).await.unwrap();
                    let l = line.trim_end();
                    if l.is_empty() {
                        break;
                    }
                    let (k, v) = l.split_once(':').unwrap();
                    match k.to_ascii_lowercase().as_str() {
                        "x-amz-target" => target = v.trim().to_string(),
                        "content-length" => length = v.trim().parse().unwrap(),
                        _ => {}
                    }
                }
                let mut body = vec![0; length];
                reader.read_exact(&mut body).await.unwrap();
                calls.fetch_add(1, Ordering::SeqCst);
                let request: Value = serde_json::from_slice(&body).unwrap_or(json!({}));
                assert_eq!(request["maxResults"], json!(100), "{request}");
                let start: usize = request["nextToken"]
                    .as_str()
                    .map_or(0, |t| t.parse().unwrap());
                let end = (start + 100).min(250);
                let next = (end < 250).then(|| end.to_string());
                let response = match target.as_str() {
                    "RedshiftServerless.ListNamespaces" => json!({
                        "namespaces": (start..end).map(|i| json!({
                            "namespaceArn": format!("arn:aws:redshift-serverless:us-east-1:123456789012:namespace/ns-{i}"),
                            "namespaceName": format!("ns{i}"),
                        })).collect::<Vec<_>>(),
                        "nextToken": next,
                    }),
                    "RedshiftServerless.ListWorkgroups" => json!({
                        "workgroups": (start..end).map(|i| json!({
                            "workgroupName": format!("wg{i}"),
                            "namespaceName": format!("ns{}", 249 - i),
                            "endpoint": {"address": format!("wg{i}.123456789012.us-east-1.redshift-serverless.amazonaws.com"), "port": 5439},
                        })).collect::<Vec<_>>(),
                        "nextToken": next,
                    }),
                    other => panic!("unexpected call {other}"),
                };
                let text = response.to_string();
                let reply = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/x-amz-json-1.1\r\ncontent-length: {}\r\n\r\n{text}",
                    text.len()
                );
                reader.get_mut().write_all(reply.as_bytes()).await.unwrap();
            }
        });
    }
}

#[tokio::test]
async fn the_sdk_serverless_client_reads_every_page() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let calls = Arc::new(AtomicUsize::new(0));
    let server = tokio::spawn(serve_serverless_api(listener, calls.clone()));
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_redshiftserverless::config::Credentials::new(
            "test", "test", None, None, "test",
        ))
        .endpoint_url(url)
        .load()
        .await;
    let directory = SdkDirectory::from_sdk_config(&config);
    // Namespace 240 is on the third page; its workgroup (wg9) on the first.
    let tags = vec![(
        "aws:redshift-serverless:namespacearn".to_string(),
        "arn:aws:redshift-serverless:us-east-1:123456789012:namespace/ns-240".to_string(),
    )];
    let ep = managed_admin_endpoint(&directory, &tags).await.unwrap();
    assert_eq!(
        ep,
        Endpoint {
            host: "wg9.123456789012.us-east-1.redshift-serverless.amazonaws.com".into(),
            port: 5439,
            engine: "redshift".into()
        }
    );
    assert_eq!(calls.load(Ordering::SeqCst), 4);
    // Namespace 0's workgroup (wg249) is on the last page of workgroups.
    let tags = vec![(
        "aws:redshift-serverless:namespacearn".to_string(),
        "arn:aws:redshift-serverless:us-east-1:123456789012:namespace/ns-0".to_string(),
    )];
    let ep = managed_admin_endpoint(&directory, &tags).await.unwrap();
    assert!(ep.host.starts_with("wg249."), "{ep:?}");
    server.abort();
}
