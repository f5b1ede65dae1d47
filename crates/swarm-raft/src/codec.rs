//! Encoding of openraft's messages inside `RaftMessage.data`. openraft owns
//! their shape; JSON keeps them readable in a packet capture and needs no
//! schema of ours.

use serde::{Serialize, de::DeserializeOwned};

pub(crate) fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, tonic::Status> {
    serde_json::to_vec(value)
        .map_err(|e| tonic::Status::internal(format!("encode raft message: {e}")))
}

pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, tonic::Status> {
    serde_json::from_slice(bytes)
        .map_err(|e| tonic::Status::invalid_argument(format!("decode raft message: {e}")))
}
