//! RDS-managed master secrets and read-replica hosts, resolved through moto's RDS API.

use rotation_core::{
    DatabaseSecret, DbName, ErrorKind, LocalSecretStore, PasswordPolicy, Rotation, Rotator,
};
use rotation_postgres::{PROFILE, PgConfig, PostgresRotator};
use rotation_rds::Rds;
use rotation_testkit::{Moto, PgCluster, PgOptions};
use secrecy::SecretString;
use serde_json::{Value, json};

async fn rds_for(moto: &Moto) -> Rds {
    Rds::from_sdk_config(&moto.sdk_config().await)
}

const FLEET: &str = r#"
kw = dict(DBInstanceClass='db.t3.micro', MasterUsername='postgres', MasterUserPassword='Password1234', AllocatedStorage=20)
src = rds.create_db_instance(DBInstanceIdentifier='src', Engine='postgres', **kw)['DBInstance']
rep = rds.create_db_instance_read_replica(DBInstanceIdentifier='rep', SourceDBInstanceIdentifier='src')['DBInstance']
other = rds.create_db_instance(DBInstanceIdentifier='other', Engine='postgres', **kw)['DBInstance']
cl = rds.create_db_cluster(DBClusterIdentifier='aur', Engine='aurora-postgresql', MasterUsername='postgres', MasterUserPassword='Password1234')['DBCluster']
w = rds.create_db_instance(DBInstanceIdentifier='aur-w', Engine='aurora-postgresql', DBInstanceClass='db.r5.large', DBClusterIdentifier='aur')['DBInstance']
r = rds.create_db_instance(DBInstanceIdentifier='aur-r', Engine='aurora-postgresql', DBInstanceClass='db.r5.large', DBClusterIdentifier='aur')['DBInstance']
cl = rds.describe_db_clusters(DBClusterIdentifier='aur')['DBClusters'][0]
print(json.dumps({
  'src': src['Endpoint']['Address'], 'src_arn': src['DBInstanceArn'], 'src_port': src['Endpoint']['Port'],
  'rep': rep['Endpoint']['Address'], 'other': other['Endpoint']['Address'],
  'cluster': cl['Endpoint'], 'reader': cl['ReaderEndpoint'], 'cluster_arn': cl['DBClusterArn'],
  'members': [[m['DBInstanceIdentifier'], m['IsClusterWriter']] for m in cl['DBClusterMembers']],
  'aur_w': w['Endpoint']['Address'], 'aur_r': r['Endpoint']['Address'],
}))
"#;

#[tokio::test]
async fn managed_master_and_replicas_resolve_through_the_rds_api() {
    let moto = Moto::start().expect("start moto");
    let fleet: Value =
        serde_json::from_str(&moto.python(FLEET).expect("create RDS fleet in moto")).unwrap();
    let s = |k: &str| fleet[k].as_str().unwrap().to_string();
    let rds = rds_for(&moto).await;

    // Instance tag (any case) -> instance endpoint; cluster tag -> writer endpoint.
    let ep = rds
        .managed_master_endpoint(&[("AWS:RDS:PrimaryDBInstanceArn".into(), s("src_arn"))])
        .await
        .unwrap();
    assert_eq!(
        (ep.host.as_str(), ep.engine.as_str()),
        (s("src").as_str(), "postgres")
    );
    assert_eq!(i64::from(ep.port), fleet["src_port"].as_i64().unwrap());
    let ep = rds
        .managed_master_endpoint(&[("aws:rds:primarydbclusterarn".into(), s("cluster_arn"))])
        .await
        .unwrap();
    assert_eq!(
        (ep.host.as_str(), ep.engine.as_str()),
        (s("cluster").as_str(), "aurora-postgresql")
    );
    // No tag, an over-long ARN, an unknown instance: typed errors that say so.
    let e = rds.managed_master_endpoint(&[]).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    let long = format!("arn:aws:rds:us-east-1:123456789012:db:{}", "x".repeat(250));
    let e = rds
        .managed_master_endpoint(&[(String::from("aws:rds:primarydbinstancearn"), long)])
        .await
        .unwrap_err();
    assert!(e.to_string().contains("maximum length of 256"), "{e}");
    let e = rds
        .managed_master_endpoint(&[(
            "aws:rds:primarydbinstancearn".into(),
            "arn:aws:rds:us-east-1:123456789012:db:gone".into(),
        )])
        .await
        .unwrap_err();
    assert!(e.to_string().contains("DescribeDBInstances"), "{e}");

    // Replicas.
    assert!(
        rds.is_replica(&s("rep"), &s("src"), "postgres")
            .await
            .unwrap()
    );
    assert!(
        !rds.is_replica(&s("other"), &s("src"), "postgres")
            .await
            .unwrap()
    );
    assert!(
        rds.is_replica(&s("reader"), &s("cluster"), "aurora-postgresql")
            .await
            .unwrap()
    );
    let members = fleet["members"].as_array().unwrap();
    for m in members {
        let (id, writer) = (m[0].as_str().unwrap(), m[1].as_bool().unwrap());
        let host = if id == "aur-w" {
            s("aur_w")
        } else {
            s("aur_r")
        };
        assert_eq!(
            rds.is_replica(&host, &s("cluster"), "aurora-postgresql")
                .await
                .unwrap(),
            !writer,
            "{id}"
        );
    }
    // RDS MySQL and MariaDB read replicas follow the same rule; an engine RDS rotation does
    // not handle has no replicas here.
    for engine in ["mysql", "mariadb"] {
        assert!(rds.is_replica(&s("rep"), &s("src"), engine).await.unwrap());
    }
    assert!(
        !rds.is_replica(&s("rep"), &s("src"), "oracle-ee")
            .await
            .unwrap()
    );
}

#[tokio::test]
async fn a_managed_master_secret_goes_through_the_state_machine() {
    let moto = Moto::start().expect("start moto");
    let fleet: Value =
        serde_json::from_str(&moto.python(FLEET).expect("create RDS fleet in moto")).unwrap();
    let pg = PgCluster::start(PgOptions::default()).expect("start PostgreSQL");
    pg.psql("CREATE ROLE app LOGIN PASSWORD 'Initial-pw-1'")
        .unwrap();
    pg.psql("CREATE DATABASE appdb").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = LocalSecretStore::new(dir.path().join("s.json"));
    let managed = json!({"username": "postgres", "password": "Password1234"});
    let master = store
        .create_secret("rds!db-master", &SecretString::from(managed.to_string()))
        .await
        .unwrap();
    store
        .tag(
            &master,
            "aws:rds:primaryDBInstanceArn",
            fleet["src_arn"].as_str().unwrap(),
        )
        .await
        .unwrap();
    let child = json!({"engine": "postgres", "host": "localhost", "port": pg.port(), "dbname": "appdb",
                       "username": "app", "password": "Initial-pw-1", "masterarn": master, "ssl": false});
    store
        .create_secret("app", &SecretString::from(child.to_string()))
        .await
        .unwrap();
    let rotator =
        PostgresRotator::alternating_users(PgConfig::default()).with_rds(rds_for(&moto).await);

    // The hook on its own: host, port and engine from DescribeDBInstances, dbname from the child.
    let parse = |v: &Value| DatabaseSecret::parse(&SecretString::from(v.to_string())).unwrap();
    let tags = vec![(
        "aws:rds:primarydbinstancearn".to_string(),
        fleet["src_arn"].as_str().unwrap().to_string(),
    )];
    let resolved = rotator
        .resolve_master(parse(&managed), &parse(&child), Some(&tags))
        .await
        .unwrap();
    assert_eq!(resolved.host(), fleet["src"].as_str());
    assert_eq!(resolved.engine(), Some("postgres"));
    assert_eq!(resolved.dbname(), DbName::Name("appdb"));

    // Through the state machine: the current login works, the master is resolved through its
    // tags, its (moto) host differs from the current one, and the replica check asks RDS about
    // "localhost", which RDS does not know: an error that names the call, nothing changed.
    let rotation = Rotation::new(
        store.clone(),
        rotator,
        PasswordPolicy::defaults(&PROFILE.password),
    );
    let e = rotation.rotate("app").await.unwrap_err();
    assert!(
        e.to_string().contains("DescribeDBInstances for localhost"),
        "{e}"
    );
    assert_eq!(
        pg.psql("SELECT count(*) FROM pg_roles WHERE rolname = 'app_clone'")
            .unwrap(),
        "0"
    );

    // Without the RDS API, a host-less master is refused with a clear message.
    let plain = PostgresRotator::alternating_users(PgConfig::default());
    let e = plain
        .resolve_master(parse(&managed), &parse(&child), Some(&tags))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    assert!(e.to_string().contains("RDS API"), "{e}");
}
