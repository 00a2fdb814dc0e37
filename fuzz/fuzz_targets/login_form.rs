//! The login form body and the credentials in request headers.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = rtcam::http::login::parse_form(data);
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = rtcam::auth::logins::from_cookie_header(text);
        let _ = rtcam::http::guard::bearer_token(text);
    }
});
