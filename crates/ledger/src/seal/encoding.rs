//! The canonical bytes of a transfer and of a block header, which the hashes cover.
//!
//! Fixed-width fields are big-endian; optional fields carry a presence byte; text carries its
//! length. Times are microseconds since the Unix epoch (PostgreSQL's own precision). Metadata
//! is PostgreSQL's canonical `jsonb` text, so the encoding does not depend on how a client
//! would reorder keys. Changing any of this is a new version: "v1" is part of each hash.

use chrono::{DateTime, Utc};

use super::merkle::Hash;
use crate::pg::rows::TransferRow;

pub(crate) const TRANSFER_DOMAIN: &[u8] = b"fodi-transfer-v1";
const BLOCK_DOMAIN: &[u8] = b"fodi-block-v1";

pub(crate) fn transfer(row: &TransferRow) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(160);
    bytes.extend_from_slice(TRANSFER_DOMAIN);
    bytes.extend_from_slice(row.id.as_bytes());
    bytes.extend_from_slice(&row.tx_id.to_be_bytes());
    bytes.extend_from_slice(&row.seq.to_be_bytes());
    put_text(&mut bytes, Some(&row.kind));
    bytes.extend_from_slice(row.debit_wallet_id.as_bytes());
    bytes.extend_from_slice(row.credit_wallet_id.as_bytes());
    bytes.extend_from_slice(&row.amount.to_be_bytes());
    match row.pending_id {
        Some(pending) => {
            bytes.push(1);
            bytes.extend_from_slice(pending.as_bytes());
        }
        None => bytes.push(0),
    }
    put_time(&mut bytes, row.expires_at);
    put_time(&mut bytes, Some(row.created_at));
    put_text(&mut bytes, row.reason.as_deref());
    put_text(&mut bytes, row.reference.as_deref());
    put_text(&mut bytes, row.metadata_text.as_deref());
    bytes
}

/// The fields of a block that its hash covers.
pub(crate) struct BlockHeader<'a> {
    pub height: i64,
    pub previous_hash: &'a Hash,
    pub merkle_root: &'a Hash,
    pub transaction_count: i32,
    pub last_tx_id: i64,
    pub last_seq: i64,
    pub sealed_at: DateTime<Utc>,
}

pub(crate) fn block(header: &BlockHeader<'_>) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(128);
    bytes.extend_from_slice(BLOCK_DOMAIN);
    bytes.extend_from_slice(&header.height.to_be_bytes());
    bytes.extend_from_slice(header.previous_hash);
    bytes.extend_from_slice(header.merkle_root);
    bytes.extend_from_slice(&header.transaction_count.to_be_bytes());
    bytes.extend_from_slice(&header.last_tx_id.to_be_bytes());
    bytes.extend_from_slice(&header.last_seq.to_be_bytes());
    bytes.extend_from_slice(&header.sealed_at.timestamp_micros().to_be_bytes());
    bytes
}

fn put_text(bytes: &mut Vec<u8>, text: Option<&str>) {
    match text {
        Some(text) => {
            bytes.push(1);
            bytes.extend_from_slice(&(text.len() as u64).to_be_bytes());
            bytes.extend_from_slice(text.as_bytes());
        }
        None => bytes.push(0),
    }
}

fn put_time(bytes: &mut Vec<u8>, time: Option<DateTime<Utc>>) {
    match time {
        Some(time) => {
            bytes.push(1);
            bytes.extend_from_slice(&time.timestamp_micros().to_be_bytes());
        }
        None => bytes.push(0),
    }
}
