//! Ending a session the gateway opened on one side only: a failure reported to the client
//! (`close-code` mode, MISSION §2), or a service session whose client left before its upgrade.

use tokio::io::AsyncWriteExt;
use wsgate_frame::{encode_close, MAX_CLOSE_FRAME_LEN};

use super::buffer::BufferPool;
use super::peer::Peer;
use super::pump::Pump;
use super::{Common, Direction, LINGER};
use crate::failure::Close;
use crate::session::Traffic;

/// Sends `close` to the client, waits (up to [`LINGER`]) for its answering close, and ends the
/// connection.
pub async fn refuse(mut client: Peer, close: Close) {
    let (mut reader, mut writer) = client.split();
    let traffic = Traffic::default();
    // A pump that reads the client's frames and whose output is the client itself.
    let pool = BufferPool::default();
    let common = Common::default();
    let mut pump = Pump::new(Direction::ClientToService, (&mut reader, &mut writer), None, &traffic, u64::MAX, &pool, &common);
    pump.close_output(close).await;
    pump.discard_until_close().await;
}

/// Sends `close` (masked with `mask`) to a service whose session will never be relayed, and ends
/// the connection without waiting for the answer.
pub async fn abandon(mut service: Peer, (code, reason): Close, mask: [u8; 4]) {
    let (_, mut service) = service.split();
    let mut frame = [0u8; MAX_CLOSE_FRAME_LEN];
    let len = encode_close(code, &reason, Some(mask), &mut frame);
    let finish = async {
        service.write_all(&frame[..len]).await?;
        service.shutdown().await
    };
    let _ = tokio::time::timeout(LINGER, finish).await;
}
