//! A SHA-256 Merkle tree over the transfers of a block.
//!
//! Leaves are `SHA-256(0x00 || encoding)` and inner nodes `SHA-256(0x01 || left || right)`:
//! the prefixes keep a leaf from passing for an inner node (second-preimage attacks). A level
//! with an odd count promotes its last node unchanged rather than pairing it with itself, so
//! no two different lists of transfers share a root (the duplicated-last-node flaw).

use sha2::{Digest, Sha256};

pub type Hash = [u8; 32];

pub fn leaf(encoding: &[u8]) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update([0x00]);
    hasher.update(encoding);
    hasher.finalize().into()
}

pub fn node(left: &Hash, right: &Hash) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update([0x01]);
    hasher.update(left);
    hasher.update(right);
    hasher.finalize().into()
}

/// The root over `leaves` in order; `None` for no leaves (blocks are never empty).
pub fn root(leaves: &[Hash]) -> Option<Hash> {
    let mut level: Vec<Hash> = leaves.to_vec();
    if level.is_empty() {
        return None;
    }
    while level.len() > 1 {
        level = parents(&level);
    }
    level.first().copied()
}

/// The level above `level`: a pair becomes their node; a lone last node passes up as it is.
pub fn parents(level: &[Hash]) -> Vec<Hash> {
    level
        .chunks(2)
        .filter_map(|pair| {
            pair.iter()
                .copied()
                .reduce(|left, right| node(&left, &right))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_single_leaf_is_its_own_root() {
        let only = leaf(b"a");
        assert_eq!(root(&[only]), Some(only));
        assert_eq!(root(&[]), None);
    }

    #[test]
    fn order_and_every_leaf_matter() {
        let (a, b, c) = (leaf(b"a"), leaf(b"b"), leaf(b"c"));
        let abc = root(&[a, b, c]).unwrap();
        assert_ne!(abc, root(&[b, a, c]).unwrap());
        assert_ne!(abc, root(&[a, b]).unwrap());
        // The classic flaw: duplicating the odd last leaf must not give the same root.
        assert_ne!(abc, root(&[a, b, c, c]).unwrap());
        assert_eq!(abc, node(&node(&a, &b), &c));
    }

    #[test]
    fn a_leaf_cannot_pose_as_an_inner_node() {
        let (a, b) = (leaf(b"a"), leaf(b"b"));
        let inner = node(&a, &b);
        let mut forged = Vec::new();
        forged.extend_from_slice(&a);
        forged.extend_from_slice(&b);
        assert_ne!(leaf(&forged), inner);
    }
}
