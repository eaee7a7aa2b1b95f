//! Linux error numbers (x86_64), the one error type at the ABI.

/// A Linux errno. System calls return `-errno` in `rax`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i32)]
#[allow(missing_docs, clippy::upper_case_acronyms)]
pub enum Errno {
    EPERM = 1,
    ENOENT = 2,
    ESRCH = 3,
    EINTR = 4,
    EIO = 5,
    E2BIG = 7,
    ENXIO = 6,
    ENOTBLK = 15,
    ENOEXEC = 8,
    EBADF = 9,
    ECHILD = 10,
    EAGAIN = 11,
    ENOMEM = 12,
    EACCES = 13,
    EFAULT = 14,
    EBUSY = 16,
    EEXIST = 17,
    EXDEV = 18,
    ENODEV = 19,
    ENOTDIR = 20,
    EISDIR = 21,
    EINVAL = 22,
    EMFILE = 24,
    ENOTTY = 25,
    ENOSPC = 28,
    ESPIPE = 29,
    EROFS = 30,
    EPIPE = 32,
    EDOM = 33,
    ERANGE = 34,
    ENAMETOOLONG = 36,
    ENOSYS = 38,
    ENOTEMPTY = 39,
    ELOOP = 40,
    ENODATA = 61,
    ELIBBAD = 80,
    ETIMEDOUT = 110,
    ESTALE = 116,
    ENOMSG = 42,
    EIDRM = 43,
    EFBIG = 27,
    EOVERFLOW = 75,
    EDEADLK = 35,
    EOPNOTSUPP = 95,
    EMSGSIZE = 90,
    EMLINK = 31,
    EUCLEAN = 117,
    ENOTSOCK = 88,
    EDESTADDRREQ = 89,
    EPROTOTYPE = 91,
    ENOPROTOOPT = 92,
    EPROTONOSUPPORT = 93,
    ESOCKTNOSUPPORT = 94,
    EPFNOSUPPORT = 96,
    EAFNOSUPPORT = 97,
    EADDRINUSE = 98,
    EADDRNOTAVAIL = 99,
    ENETDOWN = 100,
    ENETUNREACH = 101,
    ENETRESET = 102,
    ECONNABORTED = 103,
    ECONNRESET = 104,
    ENOBUFS = 105,
    EISCONN = 106,
    ENOTCONN = 107,
    ESHUTDOWN = 108,
    ETOOMANYREFS = 109,
    ECONNREFUSED = 111,
    EHOSTDOWN = 112,
    EHOSTUNREACH = 113,
    EALREADY = 114,
    EINPROGRESS = 115,
}

impl Errno {
    /// The value a system call returns for this error.
    pub fn as_return(self) -> u64 {
        (-(self as i64)) as u64
    }
}

/// What every system call returns.
pub type SysResult = Result<u64, Errno>;

impl From<framekernel::arch::usercopy::UserFault> for Errno {
    fn from(_: framekernel::arch::usercopy::UserFault) -> Self {
        Errno::EFAULT
    }
}
