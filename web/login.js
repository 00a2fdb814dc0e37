// rtcam login page: posts the password to /login (urlencoded, as the server's form reader
// expects) and goes to the viewer once the session cookie is set. No inline code: the page
// runs under a strict CSP.

const form = document.getElementById('login-form');
const input = document.getElementById('password');
const button = document.getElementById('login');
const message = document.getElementById('login-message');

let busy = false; // a request is in flight
let blockedUntil = 0; // performance.now() before which the server refuses us (429)
let countdown = null;

function say(text, kind = 'error') {
  message.textContent = text;
  message.dataset.kind = text ? kind : '';
}

function updateButton() {
  button.disabled = busy || performance.now() < blockedUntil;
  form.setAttribute('aria-busy', String(busy));
}

// The server said "wait N s": keep the button off and count down, then let the user retry.
function blockFor(seconds) {
  const secs = Math.max(1, Math.ceil(seconds));
  blockedUntil = performance.now() + secs * 1000;
  if (countdown) clearInterval(countdown);
  const tick = () => {
    const left = Math.ceil((blockedUntil - performance.now()) / 1000);
    if (left <= 0) {
      clearInterval(countdown);
      countdown = null;
      blockedUntil = 0;
      say('');
      updateButton();
      input.focus();
      return;
    }
    say(`Too many attempts: try again in ${left} s.`);
  };
  tick();
  updateButton();
  countdown = setInterval(tick, 250);
}

// Retry-After is seconds here; an HTTP date is allowed by the spec, so read that too.
function retryAfterSeconds(value) {
  if (!value) return 1;
  const n = Number(value.trim());
  if (Number.isFinite(n)) return n;
  const t = Date.parse(value);
  return Number.isFinite(t) ? (t - Date.now()) / 1000 : 1;
}

async function submit(ev) {
  ev.preventDefault();
  if (busy || performance.now() < blockedUntil) return;
  const password = input.value;
  if (!password) {
    say('Enter the password.');
    input.focus();
    return;
  }
  busy = true;
  updateButton();
  say('Checking…', 'info');
  let res;
  try {
    res = await fetch('/login', {
      method: 'POST',
      headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ password }).toString(),
      credentials: 'same-origin',
      cache: 'no-store',
    });
  } catch (e) {
    busy = false;
    updateButton();
    say(`Cannot reach the camera: ${e.message || e}`);
    return;
  }
  busy = false;
  if (res.status === 204 || res.ok) {
    say('Logged in.', 'info');
    button.disabled = true;
    location.replace('/');
    return;
  }
  if (res.status === 401) {
    say('Wrong password.');
    input.value = '';
    input.focus();
    updateButton();
  } else if (res.status === 429) {
    blockFor(retryAfterSeconds(res.headers.get('Retry-After')));
  } else {
    let text = '';
    try {
      text = (await res.text()).trim();
    } catch {
      /* no body */
    }
    say(`Login failed (${res.status}${text ? `: ${text}` : ''}).`);
    updateButton();
  }
}

form.addEventListener('submit', submit);
input.addEventListener('input', () => {
  if (message.dataset.kind === 'error' && !countdown) say('');
});
updateButton();
