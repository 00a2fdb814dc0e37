// What the page says about the camera itself, from /api/status's `source`
// (rtcam's capture supervisor): live, lost (viewers see the "camera lost"
// slate while rtcam looks for it every second) or not opened yet.

// The notice to show for a status `source`, or null when the camera is fine.
export function cameraNotice(source) {
  if (!source || typeof source !== 'object') return null;
  if (source.state === 'lost') {
    const what = source.card ? `${source.card}${source.device ? ` (${source.device})` : ''}` : 'The camera';
    const why = typeof source.problem === 'string' && source.problem ? `: ${source.problem}` : '';
    return {
      kind: 'lost',
      text: `Camera lost. ${what === 'The camera' ? what : `The camera ${what}`} is gone${why}. rtcam looks for it every second; video resumes by itself.`,
    };
  }
  if (source.state === 'starting') return { kind: 'starting', text: 'The camera is starting…' };
  return null;
}

// The overlay on the video for the camera's state, from either a {"type":"camera"} message
// (state, name, problem) or /api/status's `source` (state, card, device, problem). Returns
// {kind: 'lost'|'starting', title, detail} or null when the camera is live.
export function cameraOverlay(c) {
  if (!c || typeof c !== 'object') return null;
  const text = (v) => (typeof v === 'string' ? v.trim() : '');
  let name = text(c.name);
  if (!name && text(c.card)) name = text(c.device) ? `${text(c.card)} (${text(c.device)})` : text(c.card);
  const problem = text(c.problem);
  if (c.state === 'lost') {
    const detail = name && problem ? `${name}: ${problem}` : name || problem || 'The camera stopped sending pictures.';
    return { kind: 'lost', title: 'Camera lost — looking for it…', detail };
  }
  if (c.state === 'starting') {
    return { kind: 'starting', title: 'Camera starting…', detail: problem || name };
  }
  return null;
}

// The camera's picture now, from /api/snapshot.jpg, as a Blob. A refusal throws an Error whose
// message is the device's reason (e.g. an H.264-only camera) and whose `status` is the HTTP status.
export async function fetchSnapshot() {
  const r = await fetch('/api/snapshot.jpg', { cache: 'no-store', credentials: 'same-origin' });
  if (!r.ok) {
    let text = '';
    try {
      text = (await r.text()).trim().slice(0, 200);
    } catch {
      /* no body */
    }
    throw Object.assign(new Error(text || `the camera answered ${r.status}`), { status: r.status });
  }
  return r.blob();
}
