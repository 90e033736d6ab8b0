//! Inclusion proofs: evidence, checkable without trusting the server, that a transfer is in
//! the sealed history a user pinned.
//!
//! A proof carries the transfer's canonical encoding (the bytes its Merkle leaf hashes), the
//! sibling hashes from that leaf up to its block's Merkle root, and the run of consecutive
//! block headers from the transfer's block to the block whose hash the user pinned. The pinned
//! block must be the transfer's or a later one: a block's hash commits to the blocks before it
//! (through `previous_hash`), never to those after, which anyone could forge on top of it.
//! [`verify`] recomputes the root, every header's hash and every link, and finds the pinned
//! hash at or after the transfer's block: a single changed byte anywhere fails it.

use serde::{Deserialize, Serialize};

use super::encoding::{self, BlockHeader};
use super::merkle::{self, Hash};
use super::{Block, sha256};
use crate::ids::TransferId;

/// Most blocks one proof spans between the transfer's block and the pinned one.
pub const MAX_PROOF_BLOCKS: i64 = 1_000;

/// Which side of the running hash a sibling sits on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Side {
    Left,
    Right,
}

/// One step up the Merkle tree: the sibling's hash and its side.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ProofStep {
    pub side: Side,
    #[serde(with = "hex::serde")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, pattern = "^[0-9a-f]{64}$"))]
    pub hash: Hash,
}

/// Evidence that a transfer is in the chain of sealed blocks (see the module's documentation).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct InclusionProof {
    pub transfer_id: TransferId,
    /// The transfer's canonical encoding (`fodi-transfer-v1`, hex): every field it was sealed
    /// with. Its Merkle leaf is `SHA-256(0x00 || encoding)`.
    #[serde(with = "hex::serde")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, pattern = "^([0-9a-f]{2})+$"))]
    pub leaf_encoding: Vec<u8>,
    /// Siblings from the leaf up to the block's Merkle root.
    pub path: Vec<ProofStep>,
    /// Consecutive blocks, oldest first, from the transfer's block to the pinned one.
    pub blocks: Vec<Block>,
    /// Height of the block holding the transfer.
    pub block_height: i64,
}

/// Why a proof does not hold.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProofError {
    #[error("the encoding is not of transfer {0}")]
    OtherTransfer(TransferId),
    #[error("the Merkle path does not lead to block {height}'s root")]
    RootMismatch { height: i64 },
    #[error("block {height}'s fields do not hash to its hash")]
    HeaderMismatch { height: i64 },
    #[error("block {height} does not follow the block before it")]
    BrokenLink { height: i64 },
    #[error("the proof holds no block of height {0}")]
    MissingBlock(i64),
    #[error("no block of the proof at or after the transfer's has the pinned hash")]
    PinnedHashNotFound,
}

/// Checks `proof` against `pinned`, the hash of a block the verifier trusts (read from the
/// ledger earlier, or published). `Ok` means: the transfer with `proof.leaf_encoding` is in the
/// chain that block belongs to.
pub fn verify(proof: &InclusionProof, pinned: &Hash) -> Result<(), ProofError> {
    let id_at = encoding::TRANSFER_DOMAIN.len();
    if proof.leaf_encoding.get(id_at..id_at + 16) != Some(proof.transfer_id.as_uuid().as_bytes()) {
        return Err(ProofError::OtherTransfer(proof.transfer_id));
    }
    let block = proof
        .blocks
        .iter()
        .find(|block| block.height == proof.block_height)
        .ok_or(ProofError::MissingBlock(proof.block_height))?;
    let root =
        proof.path.iter().fold(
            merkle::leaf(&proof.leaf_encoding),
            |hash, step| match step.side {
                Side::Left => merkle::node(&step.hash, &hash),
                Side::Right => merkle::node(&hash, &step.hash),
            },
        );
    if root != block.merkle_root {
        return Err(ProofError::RootMismatch {
            height: block.height,
        });
    }
    for (index, block) in proof.blocks.iter().enumerate() {
        if block_hash(block) != block.hash {
            return Err(ProofError::HeaderMismatch {
                height: block.height,
            });
        }
        if let Some(before) = index.checked_sub(1).map(|before| &proof.blocks[before])
            && (before.height.checked_add(1) != Some(block.height)
                || block.previous_hash != before.hash)
        {
            return Err(ProofError::BrokenLink {
                height: block.height,
            });
        }
    }
    // Only a pinned block at or after the transfer's commits to it.
    if proof
        .blocks
        .iter()
        .any(|block| block.height >= proof.block_height && block.hash == *pinned)
    {
        Ok(())
    } else {
        Err(ProofError::PinnedHashNotFound)
    }
}

/// The hash of a block's header, as the sealer computes it.
pub fn block_hash(block: &Block) -> Hash {
    sha256(&encoding::block(&BlockHeader {
        height: block.height,
        previous_hash: &block.previous_hash,
        merkle_root: &block.merkle_root,
        transaction_count: block.transaction_count,
        last_tx_id: block.last_position.tx_id,
        last_seq: block.last_position.seq,
        sealed_at: block.sealed_at,
    }))
}

/// The sibling path of leaf `index` among `leaves`, by the tree `merkle::root` builds (a lone
/// last node passes up unchanged, so it takes no step at that level).
pub(crate) fn path(leaves: &[Hash], mut index: usize) -> Vec<ProofStep> {
    let mut level = leaves.to_vec();
    let mut steps = Vec::new();
    while level.len() > 1 {
        if !index.is_multiple_of(2) {
            steps.push(ProofStep {
                side: Side::Left,
                hash: level[index - 1],
            });
        } else if let Some(right) = level.get(index + 1) {
            steps.push(ProofStep {
                side: Side::Right,
                hash: *right,
            });
        }
        level = merkle::parents(&level);
        index /= 2;
    }
    steps
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_leaf_has_a_path_to_the_root() {
        for count in 1..=17 {
            let leaves: Vec<Hash> = (0..count)
                .map(|n: u32| merkle::leaf(&n.to_be_bytes()))
                .collect();
            let root = merkle::root(&leaves).unwrap();
            for (index, leaf) in leaves.iter().enumerate() {
                let climbed =
                    path(&leaves, index)
                        .iter()
                        .fold(*leaf, |hash, step| match step.side {
                            Side::Left => merkle::node(&step.hash, &hash),
                            Side::Right => merkle::node(&hash, &step.hash),
                        });
                assert_eq!(climbed, root, "leaf {index} of {count}");
            }
        }
    }
}
