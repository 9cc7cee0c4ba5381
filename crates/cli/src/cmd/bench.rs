//! `ambos bench`: the flags (`ambos_bench::BenchFlags`) to a plan, then the
//! run's summary (or `--json`); the load generator is the `ambos-bench` crate.
pub fn run(a: ambos_bench::BenchFlags) -> anyhow::Result<()> {
    ambos_tls::install_default_provider();
    let out = ambos_bench::plan(&a.plan()?)?.run()?;
    let r = &out.report;
    let s = &r.summary;
    if a.json {
        println!("{}", serde_json::to_string(r)?);
    } else {
        print!("{out}");
    }
    if s.errors > 0 {
        let why = out.first_error.unwrap_or_default();
        if s.ops == 0 {
            anyhow::bail!("all {} operations failed; first error: {why}", s.errors);
        }
        eprintln!("warning: {} operations failed; first error: {why}", s.errors);
    }
    Ok(())
}
