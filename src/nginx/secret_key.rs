//! `ai_gateway_secret_key <file> | env=<NAME>;` (http, repeatable): the node's keys that open
//! sealed provider credentials (`{"sealed": "v1:..."}`, see `core::seal`). The first key is
//! the one the config center seals with; every key opens the values sealed with it, found by
//! key id. Keys are read when the configuration is parsed (in the master), so they are there
//! for the `ai_gateway_config` file that follows, the last-known-good file and every
//! snapshot from Redis. Messages name the file or variable and the key id, never the key.

use std::ffi::{c_char, c_void};
use std::io::Read;
use std::os::unix::fs::PermissionsExt;

use ngx::ffi::{ngx_command_t, ngx_conf_t, NGX_LOG_WARN};

use super::conf::MainConf;
use super::config_source::full_path;
use super::directives::{lossy, setter, SetError};
use crate::core::seal::{SealKey, KEY_TEXT};

/// `ai_gateway_secret_key <file> | env=<NAME>;`
pub unsafe extern "C" fn cmd_secret_key(
    cf: *mut ngx_conf_t,
    _cmd: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    // SAFETY: called by nginx for this directive with our MainConf.
    unsafe {
        setter(cf, conf, |mcf: &mut MainConf, args| {
            let arg = lossy(&args[0]);
            let emerg = |m: String| SetError::Emerg(format!("ai_gateway_secret_key: {m}"));
            let (key, from) = if let Some(name) = arg.strip_prefix("env=") {
                if name.is_empty() {
                    return Err(emerg(format!("invalid parameter \"{arg}\"")));
                }
                let from = format!("environment variable \"{name}\"");
                // the master's environment, as nginx has it while parsing its configuration
                let raw = std::env::var(name).map_err(|e| match e {
                    std::env::VarError::NotPresent => emerg(format!("{from} is not set")),
                    std::env::VarError::NotUnicode(_) => emerg(format!("{from} {KEY_TEXT}")),
                })?;
                let key = SealKey::parse(&raw).map_err(|p| emerg(format!("{from} {p}")))?;
                (key, from)
            } else {
                // relative to the configuration directory, as `ai_gateway_config`
                let path = full_path(cf, &arg, true)?;
                let (key, mode) = read_key_file(&path).map_err(emerg)?;
                if mode & 0o077 != 0 {
                    // as ssh does for a private key, but the key is still used
                    ngx::ngx_conf_log_error!(
                        NGX_LOG_WARN,
                        cf,
                        "ai_gateway_secret_key: \"{}\" is open to group or others (mode {:04o}); make it 0600 or 0400",
                        path,
                        mode
                    );
                }
                (key, format!("\"{path}\""))
            };
            if mcf.seal_keys.iter().any(|k| k.id() == key.id()) {
                return Err(emerg(format!(
                    "{from} holds key id {}, which an earlier \"ai_gateway_secret_key\" already has",
                    key.id()
                )));
            }
            mcf.seal_keys.push(key);
            Ok(())
        })
    }
}

/// The key in `path` and the file's permission bits. The error names the file, never what
/// it holds.
fn read_key_file(path: &str) -> Result<(SealKey, u32), String> {
    let cannot = |e: std::io::Error| format!("cannot read \"{path}\": {e}");
    let mut file = std::fs::File::open(path).map_err(cannot)?;
    let meta = file.metadata().map_err(cannot)?;
    if !meta.is_file() {
        return Err(format!("\"{path}\" is not a file"));
    }
    let mode = meta.permissions().mode() & 0o777;
    // a key file is one line: anything much longer is not one
    let mut bytes = Vec::with_capacity(80);
    file.by_ref()
        .take(1024)
        .read_to_end(&mut bytes)
        .map_err(cannot)?;
    let text = String::from_utf8(bytes).unwrap_or_default();
    let key = SealKey::parse(&text).map_err(|p| format!("\"{path}\" {p}"))?;
    Ok((key, mode))
}
