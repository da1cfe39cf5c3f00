//! Which hosts are AWS database endpoints, whose certificates chain to the RDS certificate
//! authorities (or, for DocumentDB elastic clusters and RDS Proxy, to Amazon Trust Services
//! roots, which are among the Mozilla roots every driver adds).

/// Service labels of database endpoints: RDS and Aurora (instances, cluster, reader, custom,
/// proxy, proxy endpoint, Limitless shard group and global writer endpoints all live under
/// `rds`), DocumentDB instance-based clusters (`docdb`) and elastic clusters (`docdb-elastic`).
const SERVICES: [&str; 3] = ["rds", "docdb", "docdb-elastic"];

/// DNS suffixes of the AWS partitions whose endpoint names are recognised: the commercial and
/// GovCloud partitions (`amazonaws.com`) and the China partition (`amazonaws.com.cn`).
const PARTITIONS: [&str; 2] = [".amazonaws.com.cn", ".amazonaws.com"];

/// Whether `host` is the DNS name of an RDS, Aurora or DocumentDB endpoint.
///
/// Recognised forms (case-insensitive, with or without a trailing dot), where `<service>` is
/// `rds`, `docdb` or `docdb-elastic`:
///
/// - `<name>[.<prefix>-<id>].<region>.<service>.amazonaws.com`: every commercial-partition
///   endpoint, for example `db.abc.us-east-1.rds.amazonaws.com`,
///   `c.cluster-ro-abc.eu-west-1.rds.amazonaws.com`, `p.proxy-abc.us-east-2.rds.amazonaws.com`,
///   `e.endpoint.proxy-abc.us-east-2.rds.amazonaws.com`,
///   `g.global-abc.global.rds.amazonaws.com`, `d.cluster-abc.us-east-1.docdb.amazonaws.com`,
///   `e-123.us-east-1.docdb-elastic.amazonaws.com`;
/// - the same with `.amazonaws.com.cn` (older China-region names);
/// - `<name>[.<prefix>-<id>].<service>.<region>.amazonaws.com[.cn]`: current China-region and
///   GovCloud names, for example `db.abc.rds.cn-north-1.amazonaws.com.cn`.
///
/// At least one label must precede the service label, so the service API hosts
/// (`rds.us-east-1.amazonaws.com`) are not database endpoints. `localhost` and custom DNS
/// names (a CNAME of your own pointing at an endpoint) are not recognised: they get the wider
/// trust set, which is always a superset. So are IP addresses, which get no RDS CA at all (no
/// RDS certificate names an address).
pub fn is_aws_database_host(host: &str) -> bool {
    aws_database_endpoint(host).is_some()
}

/// For an AWS database endpoint ([`is_aws_database_host`]), the region its name gives
/// (`Some(None)` for a name without one: a global writer endpoint); `None` for any other host.
pub(crate) fn aws_database_endpoint(host: &str) -> Option<Option<String>> {
    let host = host.strip_suffix('.').unwrap_or(host);
    if host.is_empty() || !host.is_ascii() {
        return None;
    }
    let host = host.to_ascii_lowercase();
    let rest = PARTITIONS.iter().find_map(|p| host.strip_suffix(p))?;
    let labels: Vec<&str> = rest.split('.').collect();
    if labels.iter().any(|l| l.is_empty()) {
        return None;
    }
    let region = |label: &str| Some(label.to_string()).filter(|l| is_region(l));
    match labels.as_slice() {
        // <endpoint>.<region or "global">.<service>
        [.., last, service] if SERVICES.contains(service) => Some(region(last)),
        // <endpoint>.<service>.<region>
        [before @ .., service, last] if SERVICES.contains(service) => {
            (!before.is_empty() && is_region(last)).then(|| region(last))
        }
        _ => None,
    }
}

/// `us-east-1`, `cn-northwest-1`, `us-gov-west-1`: lowercase words joined by hyphens, ending in
/// a number.
pub(crate) fn is_region(label: &str) -> bool {
    let Some((words, number)) = label.rsplit_once('-') else {
        return false;
    };
    !number.is_empty()
        && number.bytes().all(|b| b.is_ascii_digit())
        && words
            .split('-')
            .all(|w| !w.is_empty() && w.bytes().all(|b| b.is_ascii_lowercase()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rds_aurora_and_documentdb_endpoints_are_recognised() {
        for host in [
            // RDS instance, Aurora writer / reader / custom, Limitless, global writer.
            "mydb.c9akciq32.us-east-1.rds.amazonaws.com",
            "mycluster.cluster-c9akciq32.us-east-1.rds.amazonaws.com",
            "mycluster.cluster-ro-c9akciq32.ap-southeast-6.rds.amazonaws.com",
            "analytics.cluster-custom-c9akciq32.eu-central-2.rds.amazonaws.com",
            "lim.shardgrp-c9akciq32.us-west-2.rds.amazonaws.com",
            "gdb.global-c9akciq32.global.rds.amazonaws.com",
            // RDS Proxy default and additional endpoints.
            "myproxy.proxy-c9akciq32.us-east-2.rds.amazonaws.com",
            "ro.endpoint.proxy-c9akciq32.us-east-2.rds.amazonaws.com",
            // GovCloud, old and current forms.
            "mydb.c9akciq32.us-gov-west-1.rds.amazonaws.com",
            "mydb.c9akciq32.rds.us-gov-west-1.amazonaws.com",
            // China, old and current forms.
            "mydb.c9akciq32.cn-north-1.rds.amazonaws.com.cn",
            "mycluster.cluster-c9akciq32.rds.cn-northwest-1.amazonaws.com.cn",
            "myproxy.proxy-c9akciq32.rds.cn-north-1.amazonaws.com.cn",
            // DocumentDB instance-based clusters and elastic clusters.
            "docs.cluster-c9akciq32.us-east-1.docdb.amazonaws.com",
            "docs.cluster-ro-c9akciq32.us-east-1.docdb.amazonaws.com",
            "docs-inst-1.c9akciq32.us-east-1.docdb.amazonaws.com",
            "docs.cluster-c9akciq32.docdb.cn-north-1.amazonaws.com.cn",
            "docs.cluster-c9akciq32.cn-north-1.docdb.amazonaws.com.cn",
            "elastic-123456789012.us-east-1.docdb-elastic.amazonaws.com",
            // Case and trailing dot.
            "MyDB.C9AKCIQ32.US-EAST-1.RDS.AMAZONAWS.COM.",
        ] {
            assert!(is_aws_database_host(host), "{host}");
        }
    }

    #[test]
    fn other_hosts_are_not() {
        for host in [
            "",
            ".",
            "localhost",
            "127.0.0.1",
            "::1",
            "db.example.com",
            // Service APIs and bare suffixes.
            "rds.amazonaws.com",
            "rds.us-east-1.amazonaws.com",
            "rds.cn-north-1.amazonaws.com.cn",
            "docdb.amazonaws.com",
            // Look-alikes.
            "mydb.c9akciq32.us-east-1.rds.amazonaws.com.evil.example",
            "mydb.us-east-1.rds.amazonaws.co",
            "mydb.c9akciq32.us-east-1.xrds.amazonaws.com",
            "mydb..us-east-1.rds.amazonaws.com",
            "mydb.rds.notaregion.amazonaws.com",
            // Redshift: ACM certificates, Amazon Trust Services roots.
            "wh.c9akciq32.us-east-1.redshift.amazonaws.com",
            "wg.123456789012.us-east-1.redshift-serverless.amazonaws.com",
            // Non-ASCII.
            "mydb.c9akciq32.us-east-1.rds.amazonaws.com\u{2024}",
        ] {
            assert!(!is_aws_database_host(host), "{host}");
        }
    }

    #[test]
    fn regions() {
        for r in [
            "us-east-1",
            "cn-northwest-1",
            "us-gov-west-1",
            "ap-southeast-7",
        ] {
            assert!(is_region(r), "{r}");
        }
        for r in [
            "",
            "us",
            "us-east",
            "us-east-",
            "-1",
            "US-east-1",
            "us-east-1a",
            "us--1",
        ] {
            assert!(!is_region(r), "{r}");
        }
    }
}
