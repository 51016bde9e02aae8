//! Starting a container process: inside the pod's network namespace, in a mount namespace of
//! its own where the pod's volumes are bind-mounted at their mountPaths, its own UTS namespace
//! (hostname = pod name), its own session/process group (so signals reach all its children),
//! with the pod's user/group, and a parent-death signal so a dead agent leaves no orphans.

use std::ffi::CString;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use nix::mount::{MsFlags, mount};
use nix::sched::CloneFlags;
use nix::unistd::{Gid, Uid};

use super::NodeError;

/// One bind mount into the container's mount namespace.
#[derive(Clone, Debug)]
pub struct BindMount {
    pub source: PathBuf,
    pub target: PathBuf,
    pub read_only: bool,
}

/// Everything needed to start one container process.
#[derive(Debug)]
pub struct Launch {
    pub argv: Vec<String>,
    pub env: Vec<(String, String)>,
    pub working_dir: Option<PathBuf>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub groups: Vec<u32>,
    pub netns: PathBuf,
    pub hostname: String,
    pub mounts: Vec<BindMount>,
    pub log_file: PathBuf,
}

fn cstr(p: &Path) -> Result<CString, NodeError> {
    CString::new(p.as_os_str().as_bytes()).map_err(|_| NodeError::Command {
        command: "spawn".into(),
        message: format!("path {} contains a NUL byte", p.display()),
    })
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> NodeError + '_ {
    move |source| NodeError::Io { path: path.to_path_buf(), source }
}

/// Creates the mountpoint on the host filesystem (bind mounts need an existing target of the
/// same kind as the source). Mountpoints are empty dirs/files; the host's content is hidden
/// only inside the container's mount namespace.
fn ensure_mountpoint(m: &BindMount) -> Result<(), NodeError> {
    if m.source.is_dir() {
        std::fs::create_dir_all(&m.target).map_err(io_err(&m.target))?;
    } else if !m.target.exists() {
        if let Some(parent) = m.target.parent() {
            std::fs::create_dir_all(parent).map_err(io_err(parent))?;
        }
        std::fs::File::create(&m.target).map_err(io_err(&m.target))?;
    }
    Ok(())
}

/// Starts the process; stdout and stderr append to `log_file`.
pub fn spawn(launch: &Launch) -> Result<tokio::process::Child, NodeError> {
    let Some(program) = launch.argv.first() else {
        return Err(NodeError::Command {
            command: "spawn".into(),
            message: "no command: the image has no entrypoint and the container sets no command".into(),
        });
    };
    for m in &launch.mounts {
        ensure_mountpoint(m)?;
    }
    let netns: OwnedFd = std::fs::File::open(&launch.netns).map_err(io_err(&launch.netns))?.into();
    let log = std::fs::OpenOptions::new().create(true).append(true).open(&launch.log_file).map_err(io_err(&launch.log_file))?;
    let log2 = log.try_clone().map_err(io_err(&launch.log_file))?;

    // Everything the child needs is prepared here: between fork and exec only system calls run.
    let mounts: Vec<(CString, CString, bool)> = launch
        .mounts
        .iter()
        .map(|m| Ok((cstr(&m.source)?, cstr(&m.target)?, m.read_only)))
        .collect::<Result<_, NodeError>>()?;
    let workdir = launch.working_dir.as_deref().map(cstr).transpose()?;
    let hostname = launch.hostname.chars().take(63).collect::<String>();
    let (uid, gid) = (launch.uid, launch.gid);
    let groups: Vec<Gid> = launch.groups.iter().map(|g| Gid::from_raw(*g)).collect();

    // A program given by path is opened here, as root, and executed through its descriptor:
    // a non-root pod user could not reach binaries under e.g. /root/.cache, which
    // /proc/self/fd links bypass (the descriptor closes itself at exec).
    let program_file = if program.contains('/') {
        Some(std::fs::File::open(program).map_err(|e| NodeError::Command { command: program.clone(), message: e.to_string() })?)
    } else {
        None
    };
    let mut cmd = match &program_file {
        Some(f) => {
            let mut c = tokio::process::Command::new(format!("/proc/self/fd/{}", f.as_raw_fd()));
            c.arg0(program);
            c
        }
        None => tokio::process::Command::new(program),
    };
    cmd.args(&launch.argv[1..])
        .env_clear()
        .envs(launch.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::from(log))
        .stderr(Stdio::from(log2))
        .kill_on_drop(false);
    let netns_fd = netns.as_raw_fd();
    // SAFETY: the closure only makes system calls on data prepared before the fork.
    unsafe {
        cmd.pre_exec(move || {
            let sys = |e: nix::Error| std::io::Error::from_raw_os_error(e as i32);
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong, 0, 0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            nix::unistd::setsid().map_err(sys)?;
            let fd = std::os::fd::BorrowedFd::borrow_raw(netns_fd);
            nix::sched::setns(fd, CloneFlags::CLONE_NEWNET).map_err(sys)?;
            nix::sched::unshare(CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWUTS).map_err(sys)?;
            nix::unistd::sethostname(&hostname).map_err(sys)?;
            // Nothing mounted here may propagate back to the host.
            mount(None::<&str>, "/", None::<&str>, MsFlags::MS_REC | MsFlags::MS_PRIVATE, None::<&str>).map_err(sys)?;
            for (source, target, read_only) in &mounts {
                mount(Some(source.as_c_str()), target.as_c_str(), None::<&str>, MsFlags::MS_BIND | MsFlags::MS_REC, None::<&str>)
                    .map_err(sys)?;
                if *read_only {
                    mount(
                        None::<&str>,
                        target.as_c_str(),
                        None::<&str>,
                        MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
                        None::<&str>,
                    )
                    .map_err(sys)?;
                }
            }
            if let Some(g) = gid {
                nix::unistd::setgroups(&groups).map_err(sys)?;
                nix::unistd::setgid(Gid::from_raw(g)).map_err(sys)?;
            } else if !groups.is_empty() {
                nix::unistd::setgroups(&groups).map_err(sys)?;
            }
            if let Some(u) = uid {
                nix::unistd::setuid(Uid::from_raw(u)).map_err(sys)?;
                // setuid cleared "dumpable", which hides /proc/self/fd from the process itself
                // on some kernels; the exec through it needs it back.
                if libc::prctl(libc::PR_SET_DUMPABLE, 1 as libc::c_ulong, 0, 0, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            if let Some(dir) = &workdir {
                nix::unistd::chdir(dir.as_c_str()).map_err(sys)?;
            }
            Ok(())
        });
    }
    let child = cmd.spawn().map_err(|e| NodeError::Command { command: program.clone(), message: e.to_string() });
    drop(netns);
    drop(program_file);
    child
}

/// Sends `signal` to the process group led by `pid` (every process of the container).
pub fn signal_group(pid: u32, signal: nix::sys::signal::Signal) {
    let Ok(pid) = i32::try_from(pid) else { return };
    let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pid), signal);
}

/// The exit code Kubernetes reports: the code, or 128 + signal number.
pub fn exit_code(status: std::process::ExitStatus) -> (i32, Option<i32>) {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(c), _) => (c, None),
        (None, Some(s)) => (128 + s, Some(s)),
        (None, None) => (-1, None),
    }
}
