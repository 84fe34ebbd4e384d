//! `hidumper`: OpenHarmony's dump tool. `-ls` lists the SAs, `-s ID [ID...] [-a ARGS]` dumps.

use super::{Global, print_json};
use anyhow::{Result, bail};

const USAGE: &str = "usage:\n  hidumper -ls                 list system abilities\n  hidumper -s ID [ID ...] [-a \"ARGS\"]   dump system abilities\n";

/// Runs hidumper with its own argument syntax (`-ls` is one flag, which clap cannot express).
pub async fn run(g: &Global, args: &[String]) -> Result<i32> {
    let mut g = g.clone();
    let mut ids = Vec::new();
    let mut list = false;
    let mut sa_args = Vec::new();
    let mut it = args.iter();
    let mut in_s = false;
    while let Some(a) = it.next() {
        match a.as_str() {
            "-ls" => list = true,
            "-s" => in_s = true,
            "-a" => {
                let Some(v) = it.next() else {
                    bail!("-a needs arguments\n{USAGE}")
                };
                sa_args.extend(v.split_whitespace().map(String::from));
                in_s = false;
            }
            "--json" => g.json = true,
            "--data-dir" => {
                let Some(v) = it.next() else {
                    bail!("--data-dir needs a directory")
                };
                g.data_dir = Some(v.into());
            }
            "-h" | "--help" => {
                print!("{USAGE}");
                return Ok(0);
            }
            s if in_s => match s.parse::<i32>() {
                Ok(id) => ids.push(id),
                Err(_) => bail!("hidumper: {s:?} is not a system ability id\n{USAGE}"),
            },
            s => bail!("hidumper: unknown option {s:?}\n{USAGE}"),
        }
    }
    if !list && ids.is_empty() {
        if args.iter().any(|a| a == "-s") {
            bail!("hidumper: -s needs at least one system ability id\n{USAGE}");
        }
        list = true;
    }
    let dev = g.connect().await?;
    if list {
        let l = dev.samgr().list().await?;
        if g.json {
            print_json(&l)?;
        } else {
            println!("System ability list:");
            for i in l {
                println!("{:>6}  {}", i.id, i.name);
            }
        }
    }
    for id in ids {
        let text = dev.samgr().dump(id, sa_args.clone()).await?;
        if g.json {
            print_json(&oxh_samgr::SaDump {
                sa_id: id,
                dump: text,
            })?;
        } else {
            println!("-------------------------------[ability]-------------------------------");
            println!("----------------------------------{id}----------------------------------");
            print!("{text}");
        }
    }
    Ok(0)
}
