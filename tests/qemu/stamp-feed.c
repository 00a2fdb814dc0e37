/* The audio stamp (shared/audio/AUDIO_STAMP.md, version 1) as raw S16LE,
 * 48 kHz mono, on stdout, in real time: a 10 ms chunk every 10 ms of
 * CLOCK_MONOTONIC. The samples run on from one wall-clock anchor, as a
 * sound card's would: a chunk handed on late (an emulated CPU's scheduler)
 * is written late, never cut or stretched, so the waveform stays whole and
 * the lateness shows up as latency. Only when the feed falls more than
 * RESYNC behind (the player has underrun anyway) does it take a new anchor.
 * Piped into aplay -D hw:Loopback,0,0 in the QEMU guest, it is what rtcam's
 * microphone (the loopback's capture side) hears. Static, no libasound: the
 * guest's aplay does the ALSA part.
 *   stamp-feed | aplay -q -D hw:Loopback,0,0 -t raw -f S16_LE -r 48000 -c 1 --buffer-time=200000
 * `stamp-feed --now` prints the guest's CLOCK_REALTIME in ns instead: the
 * host reads it to take the guest clock's offset out of the latency (the
 * guest sets its clock from an RTC of whole seconds).
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define RATE 48000
#define CHUNK 480
#define AMP 0.5
#define RAMP 0.0025
#define RESYNC_NS 150000000ull

static uint8_t crc8(const uint8_t *b, int n) {
    uint8_t crc = 0;
    for (int i = 0; i < n; i++) {
        crc ^= b[i];
        for (int k = 0; k < 8; k++)
            crc = (crc & 0x80) ? (uint8_t)((crc << 1) ^ 0x07) : (uint8_t)(crc << 1);
    }
    return crc;
}

static double ramp(double u, double len) {
    if (u < 0 || u >= len) return 0;
    if (u < RAMP) return 0.5 - 0.5 * cos(M_PI * u / RAMP);
    if (u > len - RAMP) return 0.5 - 0.5 * cos(M_PI * (len - u) / RAMP);
    return 1;
}

/* The waveform at Unix time t_ns. */
static double value_at(uint64_t t_ns) {
    uint64_t k = t_ns / 500000000ull;
    double tau = (double)(t_ns - k * 500000000ull) / 1e9;
    if (tau < 0.030)
        return AMP * ramp(tau, 0.030) * sin(2 * M_PI * (600 * tau + 0.5 * 100000 * tau * tau));
    if (tau < 0.040 || tau >= 0.160) return 0;
    int j = (int)((tau - 0.040) / 0.020);
    uint16_t slot = (uint16_t)(k & 0xffff);
    uint8_t bytes[2] = {(uint8_t)(slot >> 8), (uint8_t)(slot & 0xff)};
    uint32_t word = ((uint32_t)slot << 8) | crc8(bytes, 2);
    int sym = (word >> (20 - 4 * j)) & 0xf;
    double u = tau - 0.040 - 0.020 * j;
    return AMP * ramp(u, 0.020) * sin(2 * M_PI * (600 + 200 * sym) * u);
}

static uint64_t now_ns(clockid_t c) {
    struct timespec ts;
    clock_gettime(c, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "--now") == 0) {
        printf("%llu\n", (unsigned long long)now_ns(CLOCK_REALTIME));
        return 0;
    }
    int16_t buf[CHUNK];
    uint64_t start = now_ns(CLOCK_MONOTONIC);
    uint64_t wall0 = now_ns(CLOCK_REALTIME);
    for (uint64_t n = 0;; n++) {
        uint64_t due = start + n * 10000000ull;
        uint64_t mono = now_ns(CLOCK_MONOTONIC);
        if (mono > due + RESYNC_NS) {
            start = mono;
            wall0 = now_ns(CLOCK_REALTIME);
            n = 0;
            due = start;
        } else if (due > mono) {
            struct timespec ts = {(time_t)((due - mono) / 1000000000ull), (long)((due - mono) % 1000000000ull)};
            nanosleep(&ts, NULL);
        }
        uint64_t first = wall0 + n * 10000000ull;
        for (int i = 0; i < CHUNK; i++) {
            double x = value_at(first + (uint64_t)i * 1000000000ull / RATE) * 32767.0;
            buf[i] = (int16_t)(x > 32767 ? 32767 : x < -32768 ? -32768 : lround(x));
        }
        if (write(1, buf, sizeof buf) != (ssize_t)sizeof buf) return 0;
    }
}
