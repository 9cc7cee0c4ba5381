//! README.md's own steps, run as written (the binary and the ports
//! swapped in): what a newcomer types must work, and must not hand the CA's
//! files to the clients it lets in.
use ambos_interop_tests::{ambos_bin, free_port, run};
use std::path::Path;
use std::process::Command;

/// The ```sh block under `heading` in README.md.
fn recipe(heading: &str) -> String {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md")).unwrap();
    let after = readme.split(heading).nth(1).unwrap_or_else(|| panic!("README.md has no {heading:?}"));
    let block = after.split("```sh\n").nth(1).unwrap();
    block.split("```").next().unwrap().to_string()
}

#[test]
fn the_by_hand_recipe_gives_a_verified_request_and_serves_none_of_the_cas_files() {
    let (service, proxy) = (free_port(), free_port());
    let steps = recipe("## From zero to a verified mTLS request, by hand")
        .replace("8080", &service.to_string())
        .replace("8443", &proxy.to_string());
    let dir = tempfile::tempdir().unwrap();
    // `ambos` on the PATH as the README assumes (a link, so that a
    // background job is the process itself and the trap stops it); each
    // curl waits for the service's and the proxy's ports; every job is stopped at exit.
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    std::os::unix::fs::symlink(ambos_bin(), bin.join("ambos")).unwrap();
    let script = format!(
        r#"PATH="{bin}:$PATH"
curl() {{ for port in {service} {proxy}; do for _ in $(seq 300); do (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.1; done; done
  command curl -s -o /dev/null -w '%{{http_code}}\n' "$@" || echo "curl exit $?"; }}
trap 'kill $(jobs -p) 2>/dev/null' EXIT
{steps}
echo "CA files: $(curl --cacert certs/ca.crt --cert certs/alice.crt --key certs/alice.key https://localhost:{proxy}/ambos-data/)"
echo "keys: $(curl --cacert certs/ca.crt --cert certs/alice.crt --key certs/alice.key https://localhost:{proxy}/certs/localhost.key)"
"#,
        bin = bin.display()
    );
    let r = run(Command::new("timeout").args(["120", "bash", "-c"]).arg(&script).current_dir(dir.path()));
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert!(lines.contains(&"200"), "the verified request: {} {}", r.stdout, r.stderr);
    assert!(
        lines.iter().any(|l| l.starts_with("curl exit")),
        "the request without a certificate is refused: {}",
        r.stdout
    );
    assert!(r.stdout.contains("CA files: 404"), "the CA database is served: {}", r.stdout);
    assert!(r.stdout.contains("keys: 404"), "the server key is served: {}", r.stdout);
}
