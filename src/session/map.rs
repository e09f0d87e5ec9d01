//! The hash map of per-client state: there is one or more in every
//! session, and every connection pays for their size.

/// A map hashed with ahash's process-wide keys (chosen at random once per
/// process, shared by every such map): a zero-sized hasher instead of 32
/// bytes of keys in every map, which is memory every connection pays.
pub type SharedSeedMap<K, V> =
    std::collections::HashMap<K, V, std::hash::BuildHasherDefault<ahash::AHasher>>;
