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
