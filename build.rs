//! Passes facts about the nginx the module is built against (from nginx-sys, a direct
//! dependency with `links = "nginx"`) to the crate: the version, logged when the module
//! starts, and `ngx_os`/`ngx_feature` cfgs for code that must differ between nginx builds.

fn main() {
    let version = std::env::var("DEP_NGINX_VERSION").unwrap_or_else(|_| "unknown".to_string());
    println!(
        "cargo::rustc-env=AI_GATEWAY_NGINX_VERSION={}",
        version.trim_matches('"')
    );

    for (name, list, check) in [
        ("ngx_os", "DEP_NGINX_OS", "DEP_NGINX_OS_CHECK"),
        (
            "ngx_feature",
            "DEP_NGINX_FEATURES",
            "DEP_NGINX_FEATURES_CHECK",
        ),
    ] {
        let values = std::env::var(check).unwrap_or_default();
        // already a quoted, comma-separated list: "linux","darwin",...
        println!("cargo::rustc-check-cfg=cfg({name}, values({values}))");
        for value in std::env::var(list).unwrap_or_default().split(',') {
            let value = value.trim();
            if !value.is_empty() {
                println!("cargo::rustc-cfg={name}=\"{value}\"");
            }
        }
    }
    println!("cargo::rerun-if-env-changed=DEP_NGINX_VERSION");
    println!("cargo::rerun-if-env-changed=DEP_NGINX_OS");
    println!("cargo::rerun-if-env-changed=DEP_NGINX_FEATURES");
}
