//! The deployment files in deploy/: the systemd units pass `systemd-analyze
//! verify` and keep a low `systemd-analyze security` exposure, the
//! Kubernetes examples pass the API schemas (kubernetes-validate) and their
//! proxy configuration passes `ambos proxy --check`, and the container
//! image's filesystem (scripts/docker-rootfs.sh, which the Dockerfile runs)
//! holds a binary that needs nothing the runtime image lacks.
use ambos_interop_tests::{ambos_bin, run, TestCa};
use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The unit `name` as installed, with the binary where this build has it.
fn unit(dir: &Path, name: &str, instance: Option<&str>) -> PathBuf {
    let text = std::fs::read_to_string(repo().join("deploy/systemd").join(name)).unwrap();
    let text = text.replace("/usr/local/bin/ambos", ambos_bin().to_str().unwrap());
    let file = dir.join(instance.map_or(name.to_string(), |i| name.replace("@.", &format!("@{i}."))));
    std::fs::write(&file, text).unwrap();
    file
}

#[test]
fn the_systemd_units_verify_clean_and_are_hardened() {
    let dir = tempfile::tempdir().unwrap();
    for (name, instance) in
        [("ambos-serve.service", None), ("ambos-proxy.service", None), ("ambos-agent@.service", Some("web"))]
    {
        let file = unit(dir.path(), name, instance);
        let r = run(Command::new("systemd-analyze").args(["verify", "--man=no"]).arg(&file));
        assert_eq!((r.code, r.stdout.trim(), r.stderr.trim()), (0, "", ""), "{name}");
        let r = run(Command::new("systemd-analyze").args(["security", "--offline=yes", "--no-pager"]).arg(&file));
        let score: f64 = r
            .stdout
            .lines()
            .find_map(|l| l.split("exposure level for ").nth(1))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("{name}: no exposure level in {} {}", r.stdout, r.stderr));
        assert!(score <= 2.0, "{name}: exposure {score} (systemd calls <= 2.0 OK)");
        let text = std::fs::read_to_string(&file).unwrap();
        for needed in ["User=ambos", "NoNewPrivileges=yes", "ProtectSystem=strict", "UMask=0077", "Type=notify"] {
            assert!(text.contains(needed), "{name} lacks {needed}");
        }
    }
}

#[test]
fn the_kubernetes_examples_pass_the_api_schemas_and_their_proxy_config_checks() {
    for file in ["ca-server.yaml", "proxy-sidecar.yaml"] {
        let path = repo().join("deploy/kubernetes").join(file);
        let r = run(Command::new("kubernetes-validate").args(["--strict", "--quiet"]).arg(&path));
        assert_eq!(r.code, 0, "{file}: {} {}", r.stdout, r.stderr);
    }
    // The ConfigMap's proxy.toml, with its paths pointed at real files.
    let yaml = std::fs::read_to_string(repo().join("deploy/kubernetes/proxy-sidecar.yaml")).unwrap();
    let toml: String = yaml
        .lines()
        .skip_while(|l| !l.trim_start().starts_with("proxy.toml: |"))
        .skip(1)
        .take_while(|l| l.starts_with("    "))
        .map(|l| format!("{}\n", &l[4..]))
        .collect();
    assert!(toml.contains("[upstream]"), "{toml}");
    let ca = TestCa::new(&[]);
    ca.issue("server", "web", &["--san", "dns:web.default.svc"]);
    let certs = ca.certs();
    let toml = toml
        .replace("/certs/", &format!("{}/", certs.display()))
        .replace("/etc/ambos/root.crt", &ca.data().join("root.crt").display().to_string())
        .replace("0.0.0.0:8443", "127.0.0.1:0");
    let config = ca.write("proxy.toml", toml);
    let r = run(Command::new(ambos_bin()).args(["proxy", "--check", "--config"]).arg(&config));
    assert_eq!(r.code, 0, "{} {}", r.stdout, r.stderr);
}

#[test]
fn the_image_filesystem_holds_a_binary_the_runtime_image_can_run() {
    let dockerfile = std::fs::read_to_string(repo().join("deploy/docker/Dockerfile")).unwrap();
    assert!(
        dockerfile.contains("scripts/docker-rootfs.sh target/release/ambos /out"),
        "the Dockerfile lays out its files with the script"
    );
    let out = tempfile::tempdir().unwrap();
    let root = out.path().join("root");
    let r = run(Command::new(repo().join("scripts/docker-rootfs.sh")).arg(ambos_bin()).arg(&root));
    assert_eq!(r.code, 0, "{}", r.stderr);
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &str| std::fs::metadata(root.join(p)).unwrap().permissions().mode() & 0o777;
    assert_eq!((mode("usr/local/bin/ambos"), mode("var/lib/ambos"), mode("etc/ambos")), (0o755, 0o700, 0o755));
    // A library the distroless image lacks is refused: a binary linked to libssl stands in.
    let ssl_linked = ["/usr/bin/curl", "/usr/bin/openssl"].into_iter().find(|p| Path::new(p).exists()).unwrap();
    let r = run(Command::new(repo().join("scripts/docker-rootfs.sh")).arg(ssl_linked).arg(out.path().join("bad")));
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("which the runtime image does not have"), "{}", r.stderr);
}
