//! Ending a session the gateway accepted only to report a failure (`close-code` mode, MISSION §2).

use tokio::io::{AsyncRead, AsyncWrite};

use super::pump::Pump;
use super::{Direction, Limits};
use crate::failure::Close;
use crate::session::Traffic;

/// Sends `close` to the client, waits (up to [`super::LINGER`]) for its answering close, and ends
/// the connection.
pub async fn refuse<C>(client: C, close: Close)
where
    C: AsyncRead + AsyncWrite + Unpin,
{
    let (mut reader, mut writer) = tokio::io::split(client);
    let traffic = Traffic::default();
    let limits = Limits { max_frame_size: u64::MAX };
    // A pump that reads the client's frames and whose output is the client itself.
    let mut pump = Pump::new(Direction::ClientToService, &mut reader, &mut writer, None, &traffic, limits);
    pump.close_output(close).await;
    pump.discard_until_close().await;
}
