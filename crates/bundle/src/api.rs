//! The bundle manager's IPC contract (filled below).
