//! Makes a [`Snapshot`] from a JSON document: the same parser as `nginx -t` (duplicate keys
//! and unknown fields refused), then the IO a snapshot needs before any request may use it:
//! every target's host resolved and its credential read (a sealed one opened with the node's
//! keys, `ai_gateway_secret_key`). Runs at configuration time (the
//! `ai_gateway_config` file, the last-known-good file) and on the per-worker runtime (a
//! snapshot from Redis), never on a request.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::Path;

use crate::core::config::GatewayConfig;
use crate::core::routing::resolved::ResolvedTarget;
use crate::core::routing::{credential_secret, Credential, Routing};
use crate::core::seal::{self, SealKey};
use crate::core::snapshot::{sha256_hex, Origin, Snapshot, Source};

/// Parses, validates and resolves `document`. Relative credential files are relative to
/// `config_dir`; sealed credentials are opened with `keys`. The error says what is wrong,
/// with the JSON path (never a credential).
pub fn snapshot(
    document: &[u8],
    source: Source,
    version: u64,
    epoch: &str,
    config_dir: &Path,
    keys: &[SealKey],
) -> Result<Snapshot, String> {
    let config = GatewayConfig::from_json(document).map_err(|e| e.to_string())?;
    let targets = resolve_targets(&config.routing, config_dir, keys)?;
    Ok(Snapshot {
        config,
        targets,
        origin: Origin {
            source,
            version,
            epoch: epoch.to_string(),
            sha256: sha256_hex(document),
        },
    })
}

/// Resolves every target's host (blocking, as nginx resolves the `server`s of an `upstream
/// {}` block) and reads its credential (opening a sealed one with `keys`).
pub fn resolve_targets(
    routing: &Routing,
    config_dir: &Path,
    keys: &[SealKey],
) -> Result<Vec<ResolvedTarget>, String> {
    routing
        .targets
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let addrs: Vec<SocketAddr> = (t.host.as_str(), t.port)
                .to_socket_addrs()
                .map_err(|e| format!("targets[{i}].base_url: host \"{}\" not found: {e}", t.host))?
                .collect();
            if addrs.is_empty() {
                return Err(format!(
                    "targets[{i}].base_url: host \"{}\" has no address",
                    t.host
                ));
            }
            let secret = match &t.credential {
                None => None,
                Some(Credential::Inline(s)) => Some(s.clone()),
                Some(Credential::Env(name)) => {
                    let raw = std::env::var(name).map_err(|_| {
                        format!(
                            "targets[{i}].credential.env: environment variable \"{name}\" is not set"
                        )
                    })?;
                    let key = credential_secret(&raw, false).map_err(|problem| {
                        format!(
                            "targets[{i}].credential.env: the key in environment variable \"{name}\" {problem}"
                        )
                    })?;
                    Some(key.to_string())
                }
                Some(Credential::File(path)) => {
                    let raw = read_credential_file(&config_dir.join(path)).map_err(|e| {
                        format!("targets[{i}].credential.file: cannot read \"{path}\": {e}")
                    })?;
                    let key = credential_secret(&raw, true).map_err(|problem| {
                        format!(
                            "targets[{i}].credential.file: the key in \"{path}\" {problem} (one line, at most one line break at its end)"
                        )
                    })?;
                    Some(key.to_string())
                }
                Some(Credential::Sealed(text)) => Some(open_sealed(text, keys, i)?),
            };
            Ok(ResolvedTarget::new(t, addrs, secret.as_deref()))
        })
        .collect()
}

/// The longest credential file read: a key is a line; a bigger file (or a device that never
/// ends) is refused rather than read into memory.
const CREDENTIAL_FILE_MAX: u64 = 16 * 1024;

fn read_credential_file(path: &Path) -> std::io::Result<String> {
    use std::io::Read;
    let mut text = String::new();
    std::fs::File::open(path)?
        .take(CREDENTIAL_FILE_MAX + 1)
        .read_to_string(&mut text)?;
    if text.len() as u64 > CREDENTIAL_FILE_MAX {
        return Err(std::io::Error::other(format!(
            "larger than {CREDENTIAL_FILE_MAX} bytes (a key is one line)"
        )));
    }
    Ok(text)
}

/// Opens target `i`'s sealed credential; the key inside must be one header-safe token, as an
/// inline one. Errors name the JSON path and key ids, never the value.
fn open_sealed(text: &str, keys: &[SealKey], i: usize) -> Result<String, String> {
    let path = format!("targets[{i}].credential.sealed");
    if keys.is_empty() {
        return Err(format!(
            "{path}: no \"ai_gateway_secret_key\" to open it (the directive must come before \
             \"ai_gateway_config\" in the http block)"
        ));
    }
    let opened = seal::open(text, keys).map_err(|e| format!("{path}: {e}"))?;
    credential_secret(&opened, false)
        .map_err(|problem| format!("{path}: the opened key {problem}"))?;
    Ok(opened)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_credential_file_is_read_up_to_16_kib() {
        let e = read_credential_file(Path::new("/dev/zero")).unwrap_err();
        assert!(e.to_string().contains("larger than 16384 bytes"), "{e}");
        assert!(read_credential_file(Path::new("/nonexistent/k")).is_err());
    }

    #[test]
    fn a_document_becomes_a_snapshot_with_its_targets_resolved() {
        let doc = br#"{"version":"v7","targets":[{"name":"a","provider":"anthropic","base_url":"http://127.0.0.1:9","credential":{"file":"k"}}],
                       "routes":[{"targets":["a"]}]}"#;
        let dir = std::env::temp_dir().join(format!("aigw-load-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("k"), "sk-ant-123\n").unwrap();
        let s = snapshot(doc, Source::Redis, 4, "e", &dir, &[]).unwrap();
        assert_eq!(s.origin.version, 4);
        assert_eq!(s.origin.sha256, sha256_hex(doc));
        assert_eq!(s.label(), "4");
        assert_eq!(s.targets[0].addrs[0].port(), 9);
        assert_eq!(s.targets[0].header("X-Api-Key"), Some("sk-ant-123"));
        assert_eq!(
            s.targets[0].default_anthropic_version.as_deref(),
            Some("2023-06-01")
        );
        std::fs::remove_file(dir.join("k")).unwrap();
        let e = snapshot(doc, Source::Redis, 4, "e", &dir, &[])
            .err()
            .unwrap();
        assert!(
            e.starts_with("targets[0].credential.file: cannot read \"k\""),
            "{e}"
        );
        std::fs::remove_dir(&dir).unwrap();
        let e = snapshot(
            br#"{"version":1,"version":2}"#,
            Source::File,
            0,
            "",
            &dir,
            &[],
        )
        .err()
        .unwrap();
        assert!(e.contains("appears twice"), "{e}");
    }

    #[test]
    fn a_sealed_credential_is_opened_with_the_node_keys() {
        let a = SealKey::from_bytes([1; 32]);
        let b = SealKey::from_bytes([2; 32]);
        let doc = |sealed: &str| {
            format!(
                r#"{{"targets":[{{"name":"a","provider":"openai","base_url":"http://127.0.0.1:9",
                     "credential":{{"sealed":"{sealed}"}}}}],"routes":[{{"targets":["a"]}}]}}"#
            )
        };
        let dir = Path::new("/");
        let sealed = a.seal("sk-opened-key", [5; 12]).unwrap();
        let s = snapshot(
            doc(&sealed).as_bytes(),
            Source::File,
            0,
            "",
            dir,
            &[b.clone(), a.clone()],
        )
        .unwrap();
        assert_eq!(
            s.targets[0].header("Authorization"),
            Some("Bearer sk-opened-key")
        );

        let e = |sealed: &str, keys: &[SealKey]| {
            let e = snapshot(doc(sealed).as_bytes(), Source::File, 0, "", dir, keys)
                .err()
                .unwrap();
            assert!(!e.contains("sk-"), "{e}");
            e
        };
        assert_eq!(
            e(&sealed, &[]),
            "targets[0].credential.sealed: no \"ai_gateway_secret_key\" to open it (the \
             directive must come before \"ai_gateway_config\" in the http block)"
        );
        assert_eq!(
            e(&sealed, std::slice::from_ref(&b)),
            format!(
                "targets[0].credential.sealed: sealed with key id {}, this node has {}",
                a.id(),
                b.id()
            )
        );
        let (head, data) = sealed.rsplit_once(':').unwrap();
        let flipped = if data.starts_with('A') { 'B' } else { 'A' };
        let tampered = format!("{head}:{flipped}{}", &data[1..]);
        assert_eq!(
            e(&tampered, std::slice::from_ref(&a)),
            format!(
                "targets[0].credential.sealed: does not decrypt with key {} (tampered or another key)",
                a.id()
            )
        );
        // what opens must be one header-safe token, as an inline key
        let injected = a.seal("sk-x\r\nX-Injected: 1", [6; 12]).unwrap();
        assert_eq!(
            e(&injected, &[a]),
            "targets[0].credential.sealed: the opened key has a line break (one value, one line)"
        );
    }
}
