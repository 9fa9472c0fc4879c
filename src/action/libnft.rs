//! nftables in-process: libnftables (the library the `nft` program is built
//! on), loaded at run time with dlopen. Running a batch this way costs about
//! 0.1 ms instead of the several milliseconds of starting `nft` (measured in
//! BENCHMARKS.md), which is most of a ban's latency. When the library is
//! missing the nftables backend runs the `nft` program instead; the rules
//! and scripts are the same either way.
//!
//! Only the handful of calls needed to run a script and read its errors are
//! bound. The context is used from one thread only (the backend's worker).

use std::ffi::{c_char, c_int, c_void, CStr, CString};

/// The library's soname.
const SONAME: &CStr = c"libnftables.so.1";

type CtxNew = unsafe extern "C" fn(u32) -> *mut c_void;
type CtxFree = unsafe extern "C" fn(*mut c_void);
type CtxBuffer = unsafe extern "C" fn(*mut c_void) -> c_int;
type CtxGet = unsafe extern "C" fn(*mut c_void) -> *const c_char;
type RunCmd = unsafe extern "C" fn(*mut c_void, *const c_char) -> c_int;

struct Api {
    ctx_new: CtxNew,
    ctx_free: CtxFree,
    buffer_output: CtxBuffer,
    buffer_error: CtxBuffer,
    get_error: CtxGet,
    run_cmd: RunCmd,
}

/// A libnftables context.
pub struct LibNft {
    api: Api,
    ctx: *mut c_void,
}

// SAFETY: an nft context has no thread affinity; LibNft is owned by one
// backend and used from one thread at a time (`&mut self` for every call).
unsafe impl Send for LibNft {}

fn sym<T>(lib: *mut c_void, name: &CStr) -> Option<T> {
    // SAFETY: `lib` is a live handle from dlopen; dlsym only reads `name`.
    let p = unsafe { libc::dlsym(lib, name.as_ptr()) };
    if p.is_null() {
        return None;
    }
    // SAFETY: T is one of the function pointer types above, matching the
    // symbol's C prototype in libnftables.h; a data pointer and a function
    // pointer have the same size on Linux.
    Some(unsafe { std::mem::transmute_copy::<*mut c_void, T>(&p) })
}

impl LibNft {
    /// Loads the library and makes a context, or `None` if the library is
    /// not installed (or lacks a symbol).
    pub fn open() -> Option<LibNft> {
        // SAFETY: a constant NUL-terminated soname. The handle is never
        // closed: the functions stay in use for the life of the process.
        let lib = unsafe { libc::dlopen(SONAME.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
        if lib.is_null() {
            return None;
        }
        let api = Api {
            ctx_new: sym(lib, c"nft_ctx_new")?,
            ctx_free: sym(lib, c"nft_ctx_free")?,
            buffer_output: sym(lib, c"nft_ctx_buffer_output")?,
            buffer_error: sym(lib, c"nft_ctx_buffer_error")?,
            get_error: sym(lib, c"nft_ctx_get_error_buffer")?,
            run_cmd: sym(lib, c"nft_run_cmd_from_buffer")?,
        };
        let ctx = Self::new_ctx(&api)?;
        Some(LibNft { api, ctx })
    }

    fn new_ctx(api: &Api) -> Option<*mut c_void> {
        // SAFETY: NFT_CTX_DEFAULT (0); the returned context is checked for
        // NULL and freed exactly once (Drop or reset).
        let ctx = unsafe { (api.ctx_new)(0) };
        if ctx.is_null() {
            return None;
        }
        // SAFETY: `ctx` is live. Buffering keeps nft's output and errors
        // off our stdout/stderr and lets us read the errors back.
        unsafe {
            (api.buffer_output)(ctx);
            (api.buffer_error)(ctx);
        }
        Some(ctx)
    }

    /// Runs an nft script as one transaction. `Err` carries nft's message.
    pub fn run(&mut self, script: &str) -> Result<(), String> {
        let text = CString::new(script).map_err(|_| "script contains a NUL byte".to_string())?;
        // SAFETY: `ctx` is live; `text` outlives the call.
        let rc = unsafe { (self.api.run_cmd)(self.ctx, text.as_ptr()) };
        // SAFETY: `ctx` is live; the buffer is owned by the context and
        // copied before the next call.
        let err = unsafe {
            let p = (self.api.get_error)(self.ctx);
            if p.is_null() {
                String::new()
            } else {
                CStr::from_ptr(p).to_string_lossy().into_owned()
            }
        };
        if rc == 0 {
            return Ok(());
        }
        // A broken netlink socket would fail every later call: start a
        // fresh context for the retry.
        if let Some(fresh) = Self::new_ctx(&self.api) {
            // SAFETY: the old context is live and no longer used after this.
            unsafe { (self.api.ctx_free)(self.ctx) };
            self.ctx = fresh;
        }
        Err(if err.trim().is_empty() {
            format!("libnftables returned {rc}")
        } else {
            err
        })
    }
}

impl Drop for LibNft {
    fn drop(&mut self) {
        // SAFETY: the context is live and dropped once.
        unsafe { (self.api.ctx_free)(self.ctx) };
    }
}
