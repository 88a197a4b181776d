//! Compiles `export`: where `collect` writes a fleet's records.

use std::time::Duration;

use super::diag::Code;
use super::plan::*;
use super::{key, Cx};
use crate::spec::*;

pub(super) fn compile_export(cx: &mut Cx, spec: &Spec, plan: &mut Plan) {
    for (id, e) in &spec.export {
        let path = key("export", id);
        cx.check_id(&path, id, "export");
        let ExportSpec::Parquet(p) = e;
        plan.export.push(ExportPlan { id: id.clone(), kind: ExportTarget::Parquet(parquet(cx, &path, p)) });
    }
}

fn parquet(cx: &mut Cx, path: &str, p: &ParquetExportSpec) -> ParquetPlan {
    let dest = dest(cx, path, p);
    let tables = p.tables.clone().unwrap_or_else(|| LakeTable::ALL.to_vec());
    if tables.is_empty() {
        cx.err(Code::InvalidValue, &key(path, "tables"), "no table to write; leave `tables` out for all three");
    }
    let mut seen = Vec::new();
    for (i, t) in tables.iter().enumerate() {
        if seen.contains(t) {
            cx.err(Code::InvalidValue, &super::diag_index(&key(path, "tables"), i), format!("`{}` twice", t.as_str()));
        }
        seen.push(*t);
    }
    let partition = p.partition.clone().unwrap_or_else(|| vec![PartitionKey::Site, PartitionKey::Date]);
    let mut seen = Vec::new();
    for (i, k) in partition.iter().enumerate() {
        if seen.contains(k) {
            cx.err(
                Code::InvalidValue,
                &super::diag_index(&key(path, "partition"), i),
                format!("`{}` twice", k.as_str()),
            );
        }
        seen.push(*k);
    }
    let roll = key(path, "roll");
    let max_rows = p.roll.max_rows.unwrap_or(ParquetPlan::DEFAULT_MAX_ROWS);
    if !(1..=100_000_000).contains(&max_rows) {
        cx.err(Code::InvalidQuantity, &key(&roll, "max_rows"), "between 1 and 100000000 rows");
    }
    let max_age = cx.positive_duration(&key(&roll, "max_age"), p.roll.max_age.as_deref(), ParquetPlan::DEFAULT_MAX_AGE);
    if max_age > Duration::from_secs(86_400) {
        cx.err(
            Code::InvalidQuantity,
            &key(&roll, "max_age"),
            "at most 24h: the hub redelivers what waits unacknowledged",
        );
    }
    ParquetPlan {
        dest,
        tables,
        partition,
        max_rows: max_rows.clamp(1, 100_000_000),
        max_age,
        compression: p.compression,
    }
}

fn dest(cx: &mut Cx, path: &str, p: &ParquetExportSpec) -> LakeDest {
    let at = key(path, "path");
    if let Some(rest) = p.path.strip_prefix("s3://") {
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let bucket_ok = (3..=63).contains(&bucket.len())
            && bucket.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
        if !bucket_ok {
            cx.err(Code::InvalidAddress, &at, format!("`{bucket}` is not an S3 bucket name")).note =
                Some("3–63 lower-case letters, digits, `-` or `.`".into());
        }
        let prefix = prefix.trim_matches('/').to_string();
        if prefix.split('/').any(|seg| seg == "." || seg == "..") {
            cx.err(Code::InvalidAddress, &at, "the key prefix has `.` or `..` in it");
        }
        let Some(s3) = &p.s3 else {
            cx.err_key(Code::MissingField, path, "an `s3://` path needs `s3: {access_key, secret_key}`").hint =
                Some("add `s3: {endpoint: http://127.0.0.1:9000, access_key: {env: AWS_ACCESS_KEY_ID}, secret_key: {env: AWS_SECRET_ACCESS_KEY}}`".into());
            return LakeDest::Folder { path: cx.path(".") };
        };
        let s3p = key(path, "s3");
        if let Some(e) = &s3.endpoint {
            match url::Url::parse(e) {
                Ok(u) if matches!(u.scheme(), "http" | "https") && u.host_str().is_some() => {
                    if !u.username().is_empty() || u.password().is_some() {
                        cx.err(
                            Code::InlineSecret,
                            &key(&s3p, "endpoint"),
                            "the URL carries credentials; use `access_key` and `secret_key`",
                        );
                    }
                }
                _ => {
                    cx.err(
                        Code::InvalidAddress,
                        &key(&s3p, "endpoint"),
                        format!("`{e}` is not `http://host:port` or `https://host`"),
                    );
                }
            }
        }
        let access_key = cx.secret(&key(&s3p, "access_key"), &s3.access_key);
        let secret_key = cx.secret(&key(&s3p, "secret_key"), &s3.secret_key);
        match (access_key, secret_key) {
            (Some(access_key), Some(secret_key)) => LakeDest::S3 {
                bucket: bucket.to_string(),
                prefix,
                endpoint: s3.endpoint.clone(),
                region: s3.region.clone().unwrap_or_else(|| "us-east-1".into()),
                access_key,
                secret_key,
            },
            _ => LakeDest::Folder { path: cx.path(".") },
        }
    } else {
        if p.path.contains("://") {
            cx.err(Code::InvalidAddress, &at, format!("`{}`: a lake is a folder or `s3://bucket/prefix`", p.path));
        } else if p.path.trim().is_empty() {
            cx.err(Code::InvalidAddress, &at, "the lake's path is empty");
        }
        if p.s3.is_some() {
            cx.err_key(Code::Useless, &key(path, "s3"), "`s3` is for an `s3://` path; this lake is a folder");
        }
        LakeDest::Folder { path: cx.path(&p.path) }
    }
}
