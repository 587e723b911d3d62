//! Writes the codec fixtures' bytes (the peer's encoding) to a directory, one `NAME.bin` per
//! fixture, for `cargo xtask bench --peer`: the peer parses the very bytes we decode.
//!
//! `cargo run -p kasmina-benches --example write_fixtures -- DIR`

use std::path::PathBuf;

fn main() -> std::io::Result<()> {
    let dir: PathBuf = std::env::args_os().nth(1).map(PathBuf::from).unwrap_or_else(|| "target/peer-fixtures".into());
    std::fs::create_dir_all(&dir)?;
    for (name, bytes) in kasmina_benches::fixtures::codec_fixtures() {
        std::fs::write(dir.join(format!("{name}.bin")), bytes)?;
    }
    println!("{}", dir.display());
    Ok(())
}
