//! `aa` (Ability Assistant), as OpenHarmony's prints it: everything on stdout, exit status 0
//! even on failure (scripts read the text), errors as `Error Code:` blocks with OpenHarmony's
//! 101xxxxx codes.

use oxh_sdk::ability::ContinueArgs;
use oxh_sdk::ability::{Element, Want, WantParam};
use std::fmt::Write as _;

const HELP: &str = "usage: aa <command> <options>
These are common aa commands list:
  help                        list available commands
  start                       start ability with options
  stop-service                stop service with options
  dump                        dump the ability info
  force-stop <bundle-name>    force stop the process with bundle name
  continue                    continue the mission to another device
";

const HELP_CONTINUE: &str = "usage: aa continue <options>
options list:
  -h, --help                   list available commands
  -m, --mission <mission-id>   the mission to move (aa dump -l shows the ids)
  -d, --device <device-id>     the trusted device to move it to (its networkId)
  -f, --free-install           install the app there on demand if it lacks it
                               (when that device's policy allows it)
";

const HELP_START: &str = "usage: aa start <options>
options list:
  -h, --help                                                   list available commands
  [-d <device-id>] [-a <ability-name> -b <bundle-name>] [-m <module-name>] [-p <perf-cmd>] [-D] [-E] [-S] [-N]  [-R] [--ps <key> <string-value>]   [--pi <key> <integer-value>]   [--pb <key> <boolean-value>]   [--psn <key>]   [-A <action-name>]   [-U <URI>]   [-e <entity>]   [-t <mime-type>]   [--wl <window-left>]   [--wt <window-top>]   [--wh <window-height>]   [--ww <window-width>]   start ability with an element name
";

const HELP_STOP_SERVICE: &str = "usage: aa stop-service <options>
options list:
  -h, --help                                                   list available commands
  [-d <device-id>] -a <ability-name> -b <bundle-name> [-m <module-name>]   stop service with an element name
";

const HELP_FORCE_STOP: &str = "usage: aa force-stop <bundle-name> [-p pid] [-r kill-reason]\n";

const HELP_DUMP: &str = "usage: aa dump <options>
options list:
  -h, --help                   list available commands
  -a, --all                    dump all abilities
  -l, --mission-list           dump mission list
  -i, --ability                dump abilityRecordId
  -e, --extension              dump elementName (FA: serviceAbilityRecords,Stage: ExtensionRecords)
  -p, --pending                dump pendingWantRecordId
  -r, --process                dump process
  -d, --device <device-id>     with -l: another trusted device's missions
  -u, --userId                 userId
  -c, --client                 client
  -c, -u are auxiliary parameters and cannot be used alone
  The original -s parameter is invalid
  The original -m parameter is invalid
";

const MORE_INFO: &str =
    "https://gitee.com/openharmony/docs/blob/master/zh-cn/application-dev/tools/aa-tool.md";

/// One of aa's error blocks.
struct AaError {
    code: u32,
    message: &'static str,
    cause: &'static str,
    solutions: &'static [&'static str],
}

impl AaError {
    fn block(&self) -> String {
        let mut s = format!(
            "Error Code:{}  Error Message:{}\nError cause: {}\n  Try the following:\n",
            self.code, self.message, self.cause
        );
        for sol in self.solutions {
            let _ = writeln!(s, "  > {sol}");
        }
        let _ = writeln!(s, "  > MoreInfo: {MORE_INFO}");
        s
    }
}

const NO_SUCH_ABILITY: AaError = AaError {
    code: 10_104_001,
    message: "The specified ability does not exist",
    cause: "The specified Ability is not installed",
    solutions: &[
        "Check if the parameter abilityName of aa -a and the parameter bundleName of -b are correct",
        "Check if the application corresponding to the specified bundleName is installed",
        "For multi-HAP applications, it is necessary to confirm whether the HAP to which the ability belongs has been installed",
    ],
};
const INVISIBLE: AaError = AaError {
    code: 10_103_001,
    message: "Failed to verify the visibility of the target ability.",
    cause: "Application visibility check failed",
    solutions: &[
        "Check if the exported configuration of the Ability field in the module.json5 of the pulled application is set to true. If not, set it to true",
    ],
};
const NO_MATCH: AaError = AaError {
    code: 10_103_101,
    message: "Failed to find a matching application for implicit launch.",
    cause: "The parameter configuration of implicit startup is incorrect, or the specified HAP package is not installed.",
    solutions: &[
        "Make sure the parameter configuration of implicit startup is correct",
        "Make sure the corresponding HAP package is installed",
    ],
};
const PERMISSION: AaError = AaError {
    code: 10_107_101,
    message: "Permission check failed when launching the ability",
    cause: "No permission to start this ability",
    solutions: &["Confirm whether the target ability can be launched"],
};
const NOT_SERVICE: AaError = AaError {
    code: 10_103_201,
    message: "The target ability is not of the ServiceAbility type.",
    cause: "The ability corresponding to abilityName is not of service type",
    solutions: &[
        "Check whether the ability corresponding to the parameter abilityName in aa -a is of type serviceAbility",
    ],
};
const NO_BUNDLE: AaError = AaError {
    code: 10_104_002,
    message: "Failed to retrieve specified package information.",
    cause: "The application corresponding to the specified package name is not installed.",
    solutions: &[
        "Check if the bundleName is correct",
        "Check whether the application corresponding to the specified bundleName is installed",
    ],
};
const INNER_START: AaError = AaError {
    code: 10_108_101,
    message: "An internal error occurs while attempting to launch the ability.",
    cause: "Kernel common errors such as memory allocation and multithreading processing. Specific reasons may include: internal object being null, processing timeout, failure to obtain application information from package management, failure to obtain system service, the number of launched ability instances has reached the limit, etc",
    solutions: &[
        "Confirm whether the system memory is sufficient and if there are any issues with the system version used by the device",
        "Check if too many abilities have been launched",
        "Try restarting the device",
    ],
};

/// The block for an ability manager error on `aa start` (OpenHarmony's CreateMessageMap).
fn start_error(code: i32) -> &'static AaError {
    match code {
        oxh_ability::code::NO_SUCH_ABILITY => &NO_SUCH_ABILITY,
        oxh_ability::code::INVISIBLE => &INVISIBLE,
        oxh_ability::code::NO_MATCH => &NO_MATCH,
        oxh_ability::code::PERMISSION_DENIED => &PERMISSION,
        oxh_ability::code::INCORRECT_ABILITY_TYPE => &NOT_SERVICE,
        _ => &INNER_START,
    }
}

/// Runs `aa ARGS` (ARGS after the tool name) and returns what it prints.
pub async fn run(global: &super::Global, args: &[String]) -> String {
    let Some(cmd) = args.first() else {
        return HELP.into();
    };
    let rest = &args[1..];
    match cmd.as_str() {
        "help" | "-h" | "--help" => HELP.into(),
        "start" => start(global, rest).await,
        "stop-service" => stop_service(global, rest).await,
        "force-stop" => force_stop(global, rest).await,
        "dump" => dump(global, rest).await,
        "continue" => continue_mission(global, rest).await,
        other => format!("aa: '{other}' is not a valid aa command. See 'aa help'.\n{HELP}"),
    }
}

/// `aa start`'s options, parsed as OpenHarmony's getopt loop does.
#[derive(Debug, Default)]
struct StartOpts {
    want: Want,
    wait: bool,
    help: bool,
}

fn parse_start(args: &[String]) -> Result<StartOpts, String> {
    let mut o = StartOpts::default();
    let mut errors = String::new();
    let mut any = false;
    let mut i = 0;
    let value = |i: &mut usize| -> Result<String, String> {
        *i += 1;
        args.get(*i)
            .filter(|v| !v.starts_with('-') || v.len() == 1)
            .cloned()
            .ok_or_else(|| "error: option requires a value.\n".to_string())
    };
    while i < args.len() {
        let a = args[i].as_str();
        any = true;
        match a {
            "-h" | "--help" => {
                o.help = true;
                return Ok(o);
            }
            // OpenHarmony's getopt knows no -W: it takes it in its '?' branch, sets the wait
            // flag and stops parsing, so -W comes last.
            "-W" => {
                o.wait = true;
                break;
            }
            "-d" | "--device" => o.want.device_id = value(&mut i)?,
            "-a" | "--ability" => o.want.ability_name = value(&mut i)?,
            "-b" | "--bundle" => o.want.bundle_name = value(&mut i)?,
            "-m" | "--module" => o.want.module_name = value(&mut i)?,
            "-e" | "--entity" => o.want.entities.push(value(&mut i)?),
            "-t" | "--type" => o.want.mime_type = value(&mut i)?,
            "-A" | "--action" => o.want.action = value(&mut i)?,
            "-U" | "--URI" => o.want.uri = value(&mut i)?,
            "-p" | "--perf" | "-s" | "--setting" | "-u" | "--wl" | "--wt" | "--wh" | "--ww" => {
                let _ = value(&mut i)?;
            }
            "-C" | "-D" | "-E" | "-S" | "-N" | "-R" | "-l" | "-c" => {
                let key = match a {
                    "-C" => "coldStart",
                    "-D" => "debugApp",
                    "-E" => "errorInfoEnhance",
                    "-S" => "sandboxApp",
                    "-N" => "nativeDebug",
                    "-R" => "multiThread",
                    _ => "",
                };
                if !key.is_empty() {
                    o.want.parameters.insert(key.into(), WantParam::Bool(true));
                }
                if a == "-c" {
                    o.want.flags |= 0x8;
                }
            }
            "--pi" | "--ps" | "--pb" => {
                let (Some(k), Some(v)) = (args.get(i + 1), args.get(i + 2)) else {
                    return Err("error: option requires a value.\n".into());
                };
                if k.starts_with('-') || v.starts_with("--") {
                    let _ = writeln!(errors, "invalid number of parameters for option {a}");
                    i += 2;
                    continue;
                }
                let p = match a {
                    "--pi" => match v.parse::<i32>() {
                        Ok(n) => Some(WantParam::Int(n as i64)),
                        Err(_) => {
                            let _ = writeln!(errors, "invalid parameter {v} for integer option");
                            None
                        }
                    },
                    "--pb" => match v.to_ascii_lowercase().as_str() {
                        "true" | "t" => Some(WantParam::Bool(true)),
                        "false" | "f" => Some(WantParam::Bool(false)),
                        _ => {
                            let _ = writeln!(errors, "invalid parameter {v} for bool option");
                            None
                        }
                    },
                    _ => Some(WantParam::String(v.clone())),
                };
                if let Some(p) = p {
                    o.want.parameters.insert(k.clone(), p);
                }
                i += 2;
            }
            "--psn" => {
                let Some(k) = args.get(i + 1) else {
                    return Err("error: option requires a value.\n".into());
                };
                o.want
                    .parameters
                    .insert(k.clone(), WantParam::String(String::new()));
                i += 1;
            }
            _ if a.starts_with('-') => return Err("fail: unknown option.\n".into()),
            _ => return Err("error: you must specify an option at least.\n".into()),
        }
        i += 1;
    }
    if !any {
        return Err("error: you must specify an option at least.\n".into());
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    if !o.want.ability_name.is_empty() && o.want.bundle_name.is_empty() {
        return Err("error: -b <bundle-name> is expected\n".into());
    }
    Ok(o)
}

async fn start(global: &super::Global, args: &[String]) -> String {
    let o = match parse_start(args) {
        Ok(o) if o.help => return HELP_START.into(),
        Ok(o) => o,
        Err(e) => return format!("{e}{HELP_START}"),
    };
    let t0 = std::time::Instant::now();
    let Ok(dev) = global.connect().await else {
        return "error: failed to execute your command.\n".into();
    };
    let implicit = o.want.ability_name.is_empty() && !o.want.is_explicit();
    let module = o.want.module_name.clone();
    match dev
        .ability()
        .start_ability(o.want, o.wait && !implicit)
        .await
    {
        Ok(r) => {
            let mut out = String::new();
            if o.wait && implicit {
                out.push_str("The wait option does not support starting implict\n");
            } else if let (true, Some(s)) = (o.wait, r.started) {
                let _ = writeln!(out, "StartMode: {}", if s.cold { "Cold" } else { "Hot" });
                let _ = writeln!(out, "BundleName: {}", r.element.bundle_name);
                let _ = writeln!(out, "AbilityName: {}", r.element.ability_name);
                if !module.is_empty() {
                    let _ = writeln!(out, "ModuleName: {}", r.element.module_name);
                }
                let _ = writeln!(out, "TotalTime: {}", s.elapsed_us / 1000);
                let _ = writeln!(out, "WaitTime: {}", t0.elapsed().as_millis());
            }
            out.push_str("start ability successfully.\n");
            out
        }
        Err(e) => {
            let code = e.code().unwrap_or(oxh_ability::code::INTERNAL);
            let block = start_error(code);
            // OpenHarmony's internal-error block says nothing of the cause; the ability
            // manager's message does (a missed deadline, a sandbox that needs root): one line
            // after the block, where tools that read `Error Code:` are not disturbed.
            let detail = match (&e, block.code) {
                (oxh_sdk::Error::Remote(r), 10_108_101) => format!("Error detail: {}\n", r.message),
                _ => String::new(),
            };
            format!("error: failed to start ability.\n{}{detail}", block.block())
        }
    }
}

async fn stop_service(global: &super::Global, args: &[String]) -> String {
    let mut e = Element {
        bundle_name: String::new(),
        module_name: String::new(),
        ability_name: String::new(),
    };
    let mut i = 0;
    while i < args.len() {
        let a = args[i].as_str();
        if a == "-h" || a == "--help" {
            return HELP_STOP_SERVICE.into();
        }
        let slot = match a {
            "-a" | "--ability" => &mut e.ability_name,
            "-b" | "--bundle" => &mut e.bundle_name,
            "-m" | "--module" => &mut e.module_name,
            "-d" | "--device" => &mut String::new(),
            _ if a.starts_with('-') => {
                return format!("fail: unknown option.\n{HELP_STOP_SERVICE}");
            }
            _ => {
                return format!("error: you must specify an option at least.\n{HELP_STOP_SERVICE}");
            }
        };
        match args.get(i + 1) {
            Some(v) => *slot = v.clone(),
            None => return format!("error: option requires a value.\n{HELP_STOP_SERVICE}"),
        }
        i += 2;
    }
    if e.ability_name.is_empty() && e.bundle_name.is_empty() {
        return format!("error: you must specify an option at least.\n{HELP_STOP_SERVICE}");
    }
    if e.bundle_name.is_empty() {
        return format!("error: -b <bundle-name> is expected\n{HELP_STOP_SERVICE}");
    }
    let Ok(dev) = global.connect().await else {
        return "error: failed to execute your command.\n".into();
    };
    if e.module_name.is_empty() {
        // The running record's module: look it up, as OpenHarmony matches the element.
        if let Ok(rs) = dev.ability().dump().await
            && let Some(r) = rs.iter().find(|r| {
                r.element.bundle_name == e.bundle_name && r.element.ability_name == e.ability_name
            })
        {
            e.module_name = r.element.module_name.clone();
        }
    }
    match dev.ability().stop_service(e).await {
        Ok(()) => "stop service ability successfully.\n".into(),
        Err(err) => {
            let block = match err.code() {
                Some(c) if c == oxh_ability::code::INCORRECT_ABILITY_TYPE => NOT_SERVICE.block(),
                Some(c) if c == oxh_ability::code::NO_SUCH_ABILITY => NO_SUCH_ABILITY.block(),
                Some(c) if c == oxh_ability::code::PERMISSION_DENIED => PERMISSION.block(),
                _ => "error: inner err.\n".into(),
            };
            format!("error: failed to stop service ability.\n{block}")
        }
    }
}

async fn force_stop(global: &super::Global, args: &[String]) -> String {
    let Some(bundle) = args.first() else {
        return HELP_FORCE_STOP.into();
    };
    let Ok(dev) = global.connect().await else {
        return "error: failed to execute your command.\n".into();
    };
    match dev.ability().force_stop(bundle).await {
        Ok(()) => "force stop process successfully.\n".into(),
        Err(e) => {
            let block = match e.code() {
                Some(c) if c == oxh_ability::code::NO_SUCH_ABILITY => NO_BUNDLE.block(),
                Some(c) if c == oxh_ability::code::PERMISSION_DENIED => PERMISSION.block(),
                _ => "error: inner err.\n".into(),
            };
            format!("error: failed to force stop process.\n{block}")
        }
    }
}

/// The mission dump, in OpenHarmony's layout (the tokens tools parse: `Mission ID #`,
/// `main name [`, `bundle name [`, `state #`).
pub fn mission_dump(records: &[oxh_sdk::ability::RecordDump], all: bool) -> String {
    let mut out = String::from("User ID #100\n  current mission lists:{\n");
    for r in records {
        if r.mission.is_none() && !all {
            continue;
        }
        if let Some(m) = r.mission {
            let _ = writeln!(
                out,
                "    Mission ID #{m}  mission name #[#{}:{}:{}]  lockedState #0  mission affinity #[]",
                r.element.bundle_name, r.element.module_name, r.element.ability_name
            );
        }
        let _ = writeln!(out, "      AbilityRecord ID #{}", r.record);
        let _ = writeln!(out, "        app name [{}]", r.element.bundle_name);
        let _ = writeln!(out, "        main name [{}]", r.element.ability_name);
        let _ = writeln!(out, "        bundle name [{}]", r.element.bundle_name);
        let kind = if r.kind == "UIAbility" {
            "PAGE"
        } else {
            "SERVICE"
        };
        let _ = writeln!(out, "        ability type [{kind}]");
        let _ = writeln!(out, "        state #{}  start time [0]", r.state);
        if r.continuing {
            // Ours: frozen while a continuation may move it (OpenHarmony's dump has no line).
            let _ = writeln!(out, "        continuing #1");
        }
        let _ = writeln!(
            out,
            "        app state #{}",
            if r.state == "FOREGROUND" {
                "FOREGROUND"
            } else {
                "BACKGROUND"
            }
        );
        let _ = writeln!(out, "        ready #1  window attached #0  launcher #0");
        let _ = writeln!(out, "        callee connections: ");
        let _ = writeln!(out, "        isKeepAlive: false");
        if let Some(pid) = r.pid {
            let _ = writeln!(out, "        pid #{pid}");
        }
        out.push_str(" }\n");
    }
    out
}

/// `aa dump`'s "first commands": exactly one is allowed.
const DUMP_FIRST: &[&str] = &[
    "-a",
    "--all",
    "-l",
    "--mission-list",
    "-e",
    "--extension",
    "-r",
    "--process",
];
/// Its auxiliary options.
const DUMP_AUX: &[&str] = &["-c", "--client", "-u", "--userId"];

/// Another device's missions (`aa dump -l -d <networkId>`), in the mission dump's layout,
/// each with whether its ability is continuable.
pub fn remote_mission_dump(network_id: &str, missions: &[oxh_sdk::ability::MissionInfo]) -> String {
    let mut out = format!("Device ID #{network_id}\n  remote mission lists:{{\n");
    for m in missions {
        let e = &m.element;
        let _ = writeln!(
            out,
            "    Mission ID #{}  mission name #[#{}:{}:{}]  lockedState #0  mission affinity #[]",
            m.mission_id, e.bundle_name, e.module_name, e.ability_name
        );
        let _ = writeln!(out, "        main name [{}]", e.ability_name);
        let _ = writeln!(out, "        bundle name [{}]", e.bundle_name);
        let _ = writeln!(out, "        state #{}", m.state);
        let _ = writeln!(out, "        continuable #{}", u8::from(m.continuable));
        out.push_str(" }\n");
    }
    out
}

/// `aa dump`'s options: the dump's first command and, with `-d`, the device.
fn parse_dump(args: &[String]) -> Result<(&str, Option<&str>), String> {
    let mut first = Vec::new();
    let mut device = None;
    let mut i = 0;
    while i < args.len() {
        let a = args[i].as_str();
        if a == "-h" || a == "--help" {
            return Err(HELP_DUMP.into());
        }
        if a == "-d" || a == "--device" {
            match args.get(i + 1).filter(|v| !v.starts_with('-')) {
                Some(v) => device = Some(v.as_str()),
                None => return Err(format!("error: option requires a value.\n{HELP_DUMP}")),
            }
            i += 2;
            continue;
        }
        if DUMP_FIRST.contains(&a) {
            first.push(a);
        } else if a.starts_with('-') && !DUMP_AUX.contains(&a) {
            return Err(format!("fail: unknown option.\n{HELP_DUMP}"));
        }
        i += 1;
    }
    match first.as_slice() {
        [] => Err(format!(
            "error: you must specify an option at least.\n{HELP_DUMP}"
        )),
        [f] => Ok((f, device)),
        _ => Err(HELP_DUMP.into()),
    }
}

async fn dump(global: &super::Global, args: &[String]) -> String {
    let (first, device) = match parse_dump(args) {
        Ok(v) => v,
        Err(e) => return e,
    };
    let missions_only = matches!(first, "-l" | "--mission-list");
    if device.is_some() && !missions_only {
        return format!("error: -d <device-id> goes with -l only.\n{HELP_DUMP}");
    }
    let Ok(dev) = global.connect().await else {
        return "error: failed to execute your command.\n".into();
    };
    if let Some(nid) = device {
        return match dev.ability().remote_missions(nid).await {
            Ok(ms) => remote_mission_dump(nid, &ms),
            Err(e) => format!("error: failed to dump the missions of device {nid}.\n{e}\n"),
        };
    }
    match dev.ability().dump().await {
        Ok(rs) => mission_dump(&rs, !missions_only),
        Err(_) => "error: inner err.\n".into(),
    }
}

/// `aa continue`'s options: the mission, the target device, install on demand.
fn parse_continue(args: &[String]) -> Result<ContinueArgs, String> {
    let (mut mission, mut device, mut free_install) = (None, None, false);
    let mut i = 0;
    while i < args.len() {
        let a = args[i].as_str();
        let v = args.get(i + 1).filter(|v| !v.starts_with('-'));
        match a {
            "-h" | "--help" => return Err(HELP_CONTINUE.into()),
            "-f" | "--free-install" => {
                free_install = true;
                i += 1;
            }
            "-m" | "--mission" | "-d" | "--device" => {
                let Some(v) = v else {
                    return Err(format!(
                        "error: option requires a value.
{HELP_CONTINUE}"
                    ));
                };
                if a.contains('m') && a != "--device" {
                    mission = Some(v.parse::<i32>().map_err(|_| {
                        format!(
                            "error: the mission id must be a number, not {v}.
{HELP_CONTINUE}"
                        )
                    })?);
                } else {
                    device = Some(v.clone());
                }
                i += 2;
            }
            _ => {
                return Err(format!(
                    "fail: unknown option.
{HELP_CONTINUE}"
                ));
            }
        }
    }
    match (mission, device) {
        (Some(mission_id), Some(dst_device_id)) => Ok(ContinueArgs {
            mission_id,
            dst_device_id,
            free_install,
        }),
        (None, _) => Err(format!(
            "error: -m <mission-id> is expected
{HELP_CONTINUE}"
        )),
        (_, None) => Err(format!(
            "error: -d <device-id> is expected
{HELP_CONTINUE}"
        )),
    }
}

/// `aa continue -m <missionId> -d <networkId>`: DistributedSchedule's code and message on
/// failure (16300501 ... 16300509), the mission then still running here.
async fn continue_mission(global: &super::Global, args: &[String]) -> String {
    let a = match parse_continue(args) {
        Ok(v) => v,
        Err(e) => return e,
    };
    let mission = a.mission_id;
    let Ok(dev) = global.connect().await else {
        return "error: failed to execute your command.\n".into();
    };
    match dev.ability().continue_mission_with(&a).await {
        Ok(()) => "continue mission successfully.\n".into(),
        Err(oxh_sdk::Error::Remote(r)) => format!(
            "error: failed to continue mission {mission}.\nError Code:{}  Error Message:{}\n",
            r.code, r.message
        ),
        Err(e) => format!("error: failed to continue mission {mission}.\n{e}\n"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continue_needs_a_mission_and_a_device() {
        let want = |free_install| ContinueArgs {
            mission_id: 3,
            dst_device_id: "abc".into(),
            free_install,
        };
        assert_eq!(parse_continue(&args("-m 3 -d abc")).unwrap(), want(false));
        assert_eq!(
            parse_continue(&args("--device abc --mission 3")).unwrap(),
            want(false)
        );
        assert_eq!(parse_continue(&args("-m 3 -f -d abc")).unwrap(), want(true));
        assert_eq!(
            parse_continue(&args("--free-install -d abc -m 3")).unwrap(),
            want(true)
        );
        assert!(
            parse_continue(&args("-d abc"))
                .unwrap_err()
                .contains("-m <mission-id>")
        );
        assert!(
            parse_continue(&args("-m 1"))
                .unwrap_err()
                .contains("-d <device-id>")
        );
        assert!(
            parse_continue(&args("-m x -d a"))
                .unwrap_err()
                .contains("number")
        );
        assert!(
            parse_continue(&args("-m"))
                .unwrap_err()
                .contains("requires a value")
        );
        assert!(
            parse_continue(&args("-z"))
                .unwrap_err()
                .contains("unknown option")
        );
    }

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn start_parses_as_openharmonys_getopt_loop() {
        let o = parse_start(&args(
            "-b com.x -a Main -m entry --pi n 3 --pb f t --ps s v --psn e -W",
        ))
        .unwrap();
        assert_eq!(o.want.bundle_name, "com.x");
        assert_eq!(o.want.ability_name, "Main");
        assert_eq!(o.want.module_name, "entry");
        assert_eq!(o.want.parameters["n"], WantParam::Int(3));
        assert_eq!(o.want.parameters["f"], WantParam::Bool(true));
        assert_eq!(o.want.parameters["s"], WantParam::String("v".into()));
        assert_eq!(o.want.parameters["e"], WantParam::String(String::new()));
        assert!(o.wait);
        // -W stops parsing: what follows it is ignored.
        let o = parse_start(&args("-b com.x -W -a Ignored")).unwrap();
        assert!(o.wait && o.want.ability_name.is_empty());
        for (input, error) in [
            ("-a Main", "error: -b <bundle-name> is expected\n"),
            ("-b", "error: option requires a value.\n"),
            ("-x", "fail: unknown option.\n"),
            ("", "error: you must specify an option at least.\n"),
            ("-b b --pi n x", "invalid parameter x for integer option\n"),
            (
                "-b b --pb n maybe",
                "invalid parameter maybe for bool option\n",
            ),
        ] {
            assert_eq!(parse_start(&args(input)).unwrap_err(), error, "{input:?}");
        }
        let o = parse_start(&args(
            "-A ohos.want.action.viewData -U https://x -e entity.system.browsable",
        ))
        .unwrap();
        assert_eq!(o.want.action, "ohos.want.action.viewData");
        assert_eq!(o.want.entities, ["entity.system.browsable"]);
    }

    #[test]
    fn error_blocks_have_openharmonys_layout() {
        let b = NO_SUCH_ABILITY.block();
        let lines: Vec<&str> = b.lines().collect();
        assert_eq!(
            lines[0],
            "Error Code:10104001  Error Message:The specified ability does not exist"
        );
        assert_eq!(
            lines[1],
            "Error cause: The specified Ability is not installed"
        );
        assert_eq!(lines[2], "  Try the following:");
        assert!(lines[3].starts_with("  > Check if the parameter abilityName"));
        assert_eq!(lines.last().unwrap(), &format!("  > MoreInfo: {MORE_INFO}"));
        assert_eq!(start_error(oxh_ability::code::INVISIBLE).code, 10_103_001);
        assert_eq!(start_error(oxh_ability::code::NO_MATCH).code, 10_103_101);
        assert_eq!(start_error(16_000_050).code, 10_108_101);
    }
}
