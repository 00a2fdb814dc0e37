// simple-whip-server's configuration for tests/browser/test_whip_janus.py (written out by
// janus_support.py as config.js beside copies of server.js and whip-janus.js: the packaged
// src/config.js is an absolute symlink to /etc/simple-whip-server/config.js).
module.exports = {
	janus: {
		address: 'ws://127.0.0.1:@WS_PORT@'
	},
	port: @WHIP_PORT@,
	rest: '/whip',
	allowTrickle: true,
	strictETags: false,
	// No Link headers: no STUN/TURN, nothing leaves the machine.
	iceServers: []
};
