//! The OCI bundle `config.json` of a sandbox: Docker-like defaults or
//! stricter (namespaces, minimal capabilities, no_new_privileges, seccomp,
//! masked and read-only kernel paths, cgroup limits), with our agent as
//! init.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use oci_spec::OciSpecError;
use oci_spec::runtime::{
    Capability, LinuxBuilder, LinuxCapabilitiesBuilder, LinuxCpuBuilder, LinuxDeviceCgroupBuilder,
    LinuxMemoryBuilder, LinuxNamespace, LinuxNamespaceType, LinuxPidsBuilder,
    LinuxResourcesBuilder, Mount, MountBuilder, ProcessBuilder, RootBuilder, Spec, SpecBuilder,
    UserBuilder, get_default_mounts,
};

use super::seccomp;

/// Where the agent binary appears inside the sandbox.
pub const AGENT_IN_SANDBOX: &str = "/.stacyvm/agent";
/// The fd on which the agent finds its listening socket.
pub const LISTEN_FD: u32 = 3;
/// Where a sandbox's socket directory appears inside it (runsc only).
pub const SOCKET_DIR_IN_SANDBOX: &str = "/.stacyvm/run";
/// The agent's socket in that directory (name shared with the host side).
pub const SOCKET_NAME: &str = "agent.sock";

/// How the agent gets its listening socket.
#[derive(Debug, Clone, Copy)]
pub enum AgentListen<'a> {
    /// Inherited as fd [`LISTEN_FD`], bound by the host where the sandbox
    /// cannot reach it (runtimes that pass extra fds: crun, runc).
    Fd,
    /// Bound by the agent in a host directory mounted into the sandbox
    /// (gVisor cannot pass fds; `--host-uds=create` makes the socket a
    /// host one). The host never follows a link placed there.
    SocketDir(&'a Path),
}
/// The network namespace of a sandbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpecNetwork<'a> {
    /// A new one from the runtime: loopback only.
    Private,
    /// The host's.
    Host,
    /// One prepared by us (network mode `allow`), joined by path.
    Join(&'a Path),
}

/// CPU quota period (µs); the quota is `vcpus` periods.
const CPU_PERIOD: u64 = 100_000;

/// What varies between sandboxes.
#[derive(Debug, Clone)]
pub struct SpecInput<'a> {
    pub hostname: &'a str,
    pub rootfs: &'a Path,
    pub agent: &'a Path,
    pub listen: AgentListen<'a>,
    /// The agent raises ^C, ^\ and ^Z itself (gVisor's terminals do not).
    pub tty_signals: bool,
    pub cgroups_path: &'a str,
    pub memory_mb: u32,
    pub vcpus: u32,
    pub pids_limit: u32,
    pub network: SpecNetwork<'a>,
    /// Bound read-only over `/etc/resolv.conf` (network mode `allow`: the
    /// StacyVM resolver).
    pub resolv_conf: Option<&'a Path>,
    pub seccomp: bool,
    /// `KEY=VALUE` pairs from the image.
    pub env: Vec<String>,
    /// The image's working directory.
    pub workdir: Option<String>,
}

/// Capabilities kept: Docker's default set minus `NET_RAW`, `MKNOD`,
/// `AUDIT_WRITE` and `SETFCAP`. Enough for package managers (chown, setuid
/// to a build user) and servers on low ports.
const CAPS: &[Capability] = &[
    Capability::Chown,
    Capability::DacOverride,
    Capability::Fowner,
    Capability::Fsetid,
    Capability::Kill,
    Capability::Setgid,
    Capability::Setuid,
    Capability::Setpcap,
    Capability::NetBindService,
    Capability::SysChroot,
];

/// Same lists as Docker's defaults.
const MASKED: &[&str] = &[
    "/proc/asound",
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];
const READONLY: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// The agent's command line.
fn agent_args(input: &SpecInput<'_>) -> Vec<String> {
    let mut args = vec![AGENT_IN_SANDBOX.to_string()];
    match input.listen {
        AgentListen::Fd => args.extend(["--listen-fd".into(), LISTEN_FD.to_string()]),
        AgentListen::SocketDir(_) => args.extend([
            "--socket".into(),
            format!("{SOCKET_DIR_IN_SANDBOX}/{SOCKET_NAME}"),
        ]),
    }
    if input.tty_signals {
        args.push("--tty-signals".into());
    }
    args
}

/// Builds the spec.
pub fn build(input: &SpecInput<'_>) -> Result<Spec, OciSpecError> {
    let caps: HashSet<Capability> = CAPS.iter().copied().collect();
    let capabilities = LinuxCapabilitiesBuilder::default()
        .bounding(caps.clone())
        .effective(caps.clone())
        .permitted(caps)
        .inheritable(HashSet::new())
        .ambient(HashSet::new())
        .build()?;

    let mut env = input.env.clone();
    if !env.iter().any(|e| e.starts_with("PATH=")) {
        env.push("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into());
    }
    if !env.iter().any(|e| e.starts_with("HOME=")) {
        env.push("HOME=/root".into());
    }
    env.push(format!("HOSTNAME={}", input.hostname));

    let process = ProcessBuilder::default()
        .terminal(false)
        .user(UserBuilder::default().uid(0u32).gid(0u32).build()?)
        .args(agent_args(input))
        .env(env)
        .cwd(input.workdir.clone().unwrap_or_else(|| "/".into()))
        .capabilities(capabilities)
        .no_new_privileges(true)
        .build()?;

    let mut mounts: Vec<Mount> = get_default_mounts();
    if let Some(resolv) = input.resolv_conf {
        mounts.push(
            MountBuilder::default()
                .destination("/etc/resolv.conf")
                .typ("bind")
                .source(resolv)
                .options(vec![
                    "bind".into(),
                    "ro".into(),
                    "nosuid".into(),
                    "nodev".into(),
                    "noexec".into(),
                ])
                .build()?,
        );
    }
    mounts.push(
        MountBuilder::default()
            .destination(AGENT_IN_SANDBOX)
            .typ("bind")
            .source(input.agent)
            .options(vec![
                "bind".into(),
                "ro".into(),
                "nosuid".into(),
                "nodev".into(),
            ])
            .build()?,
    );
    if let AgentListen::SocketDir(dir) = input.listen {
        mounts.push(
            MountBuilder::default()
                .destination(SOCKET_DIR_IN_SANDBOX)
                .typ("bind")
                .source(dir)
                .options(vec![
                    "bind".into(),
                    "rw".into(),
                    "nosuid".into(),
                    "nodev".into(),
                    "noexec".into(),
                ])
                .build()?,
        );
    }

    let mut namespaces: Vec<LinuxNamespace> = [
        Some(LinuxNamespaceType::Pid),
        Some(LinuxNamespaceType::Mount),
        Some(LinuxNamespaceType::Ipc),
        Some(LinuxNamespaceType::Uts),
        Some(LinuxNamespaceType::Cgroup),
        (input.network == SpecNetwork::Private).then_some(LinuxNamespaceType::Network),
    ]
    .into_iter()
    .flatten()
    .map(|typ| {
        let mut ns = LinuxNamespace::default();
        ns.set_typ(typ);
        ns
    })
    .collect();
    if let SpecNetwork::Join(path) = input.network {
        let mut ns = LinuxNamespace::default();
        ns.set_typ(LinuxNamespaceType::Network);
        ns.set_path(Some(path.to_path_buf()));
        namespaces.push(ns);
    }

    let mem = i64::from(input.memory_mb.max(8)) * 1024 * 1024;
    let resources = LinuxResourcesBuilder::default()
        .devices(vec![
            LinuxDeviceCgroupBuilder::default()
                .allow(false)
                .access("rwm")
                .build()?,
        ])
        // swap == limit: no swap beyond the memory limit.
        .memory(LinuxMemoryBuilder::default().limit(mem).swap(mem).build()?)
        .cpu(
            LinuxCpuBuilder::default()
                .quota(i64::from(input.vcpus.max(1)) * CPU_PERIOD as i64)
                .period(CPU_PERIOD)
                .build()?,
        )
        .pids(
            LinuxPidsBuilder::default()
                .limit(i64::from(input.pids_limit))
                .build()?,
        )
        .build()?;

    let mut linux = LinuxBuilder::default()
        .namespaces(namespaces)
        .resources(resources)
        .cgroups_path(PathBuf::from(input.cgroups_path))
        .masked_paths(MASKED.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        .readonly_paths(READONLY.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        .build()?;
    if input.seccomp {
        linux.set_seccomp(Some(seccomp::profile()?));
    }

    SpecBuilder::default()
        .version("1.0.2")
        .hostname(input.hostname)
        .root(
            RootBuilder::default()
                .path(input.rootfs)
                .readonly(false)
                .build()?,
        )
        .process(process)
        .mounts(mounts)
        .linux(linux)
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input<'a>(listen: AgentListen<'a>, tty_signals: bool) -> SpecInput<'a> {
        SpecInput {
            hostname: "sb-1",
            rootfs: Path::new("/r"),
            agent: Path::new("/a"),
            listen,
            tty_signals,
            cgroups_path: "/stacyvm/sb-1",
            memory_mb: 64,
            vcpus: 1,
            pids_limit: 32,
            network: SpecNetwork::Private,
            resolv_conf: None,
            seccomp: true,
            env: Vec::new(),
            workdir: None,
        }
    }

    fn has_socket_dir_mount(spec: &Spec) -> bool {
        spec.mounts()
            .as_ref()
            .unwrap()
            .iter()
            .any(|m| m.destination() == Path::new(SOCKET_DIR_IN_SANDBOX))
    }

    #[test]
    fn agent_gets_an_fd_or_a_socket_dir() {
        let spec = build(&input(AgentListen::Fd, false)).unwrap();
        let args = spec.process().as_ref().unwrap().args().clone().unwrap();
        assert_eq!(args, [AGENT_IN_SANDBOX, "--listen-fd", "3"]);
        assert!(!has_socket_dir_mount(&spec));

        let spec = build(&input(AgentListen::SocketDir(Path::new("/host/run")), true)).unwrap();
        let args = spec.process().as_ref().unwrap().args().clone().unwrap();
        assert_eq!(
            args,
            [
                AGENT_IN_SANDBOX,
                "--socket",
                "/.stacyvm/run/agent.sock",
                "--tty-signals"
            ]
        );
        let mount = spec
            .mounts()
            .as_ref()
            .unwrap()
            .iter()
            .find(|m| m.destination() == Path::new(SOCKET_DIR_IN_SANDBOX))
            .expect("socket dir mounted");
        assert_eq!(mount.source().as_deref(), Some(Path::new("/host/run")));
        let opts = mount.options().clone().unwrap();
        assert!(
            ["nosuid", "nodev", "noexec"]
                .iter()
                .all(|o| opts.iter().any(|x| x == o))
        );
    }

    #[test]
    fn network_namespace_is_new_absent_or_joined() {
        let net = |spec: &Spec| -> Option<LinuxNamespace> {
            spec.linux()
                .as_ref()
                .unwrap()
                .namespaces()
                .as_ref()
                .unwrap()
                .iter()
                .find(|n| n.typ() == LinuxNamespaceType::Network)
                .cloned()
        };
        let private = build(&input(AgentListen::Fd, false)).unwrap();
        assert_eq!(net(&private).unwrap().path(), &None);
        let host = build(&SpecInput {
            network: SpecNetwork::Host,
            ..input(AgentListen::Fd, false)
        })
        .unwrap();
        assert!(net(&host).is_none());
        let joined = build(&SpecInput {
            network: SpecNetwork::Join(Path::new("/run/netns/stacyvm-sb-1")),
            ..input(AgentListen::Fd, false)
        })
        .unwrap();
        assert_eq!(
            net(&joined).unwrap().path().as_deref(),
            Some(Path::new("/run/netns/stacyvm-sb-1"))
        );
    }
}
