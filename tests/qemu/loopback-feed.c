/* Plays a camera into a v4l2loopback device: sets the output side's format (MJPG or H264 at
 * WIDTHxHEIGHT) and rate, then write()s recorded frames at FPS, in a loop, one frame per
 * write (for H.264 one access unit per buffer, as a UVC H.264 camera delivers). FILE is
 * [u32 little-endian length][bytes] records (examples/loopback_frames.rs makes them). With
 * exclusive_caps=1 the device turns into a capture-only camera at the first write.
 * The QEMU system test runs it inside the guest: scripts/qemu-vivid.sh builds it statically.
 *
 *   loopback-feed DEVICE MJPG|H264 WIDTH HEIGHT FPS FILE */
#include <errno.h>
#include <fcntl.h>
#include <linux/videodev2.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

struct frame {
  const uint8_t *data;
  uint32_t len;
};

int main(int argc, char **argv) {
  if (argc != 7 && argc != 8) {
    fprintf(stderr, "usage: %s DEVICE MJPG|H264 WIDTH HEIGHT FPS FILE [TRUNCATE_EVERY]\n", argv[0]);
    return 2;
  }
  const char *path = argv[1];
  uint32_t fourcc = strcmp(argv[2], "H264") == 0 ? V4L2_PIX_FMT_H264 : V4L2_PIX_FMT_MJPEG;
  unsigned width = atoi(argv[3]), height = atoi(argv[4]), fps = atoi(argv[5]);
  /* A camera with a flaky link: every Nth frame is cut to half its length. */
  unsigned truncate_every = argc > 7 ? atoi(argv[7]) : 0;

  FILE *f = fopen(argv[6], "rb");
  if (!f) {
    perror(argv[6]);
    return 1;
  }
  fseek(f, 0, SEEK_END);
  long size = ftell(f);
  fseek(f, 0, SEEK_SET);
  uint8_t *all = malloc(size);
  if (!all || fread(all, 1, size, f) != (size_t)size) {
    fprintf(stderr, "%s: cannot read\n", argv[6]);
    return 1;
  }
  fclose(f);
  struct frame frames[4096];
  int n = 0;
  for (long at = 0; at + 4 <= size && n < 4096;) {
    uint32_t len = all[at] | all[at + 1] << 8 | all[at + 2] << 16 | (uint32_t)all[at + 3] << 24;
    if ((uint64_t)at + 4 + len > (uint64_t)size) break;
    frames[n].data = all + at + 4;
    frames[n].len = len;
    n++;
    at += 4 + len;
  }
  if (n == 0) {
    fprintf(stderr, "%s: no frames\n", argv[6]);
    return 1;
  }

  int fd = open(path, O_RDWR);
  if (fd < 0) {
    perror(path);
    return 1;
  }
  struct v4l2_format fmt;
  memset(&fmt, 0, sizeof fmt);
  fmt.type = V4L2_BUF_TYPE_VIDEO_OUTPUT;
  fmt.fmt.pix.width = width;
  fmt.fmt.pix.height = height;
  fmt.fmt.pix.pixelformat = fourcc;
  fmt.fmt.pix.field = V4L2_FIELD_NONE;
  if (ioctl(fd, VIDIOC_S_FMT, &fmt) < 0) {
    perror("VIDIOC_S_FMT (output)");
    return 1;
  }
  struct v4l2_streamparm parm;
  memset(&parm, 0, sizeof parm);
  parm.type = V4L2_BUF_TYPE_VIDEO_OUTPUT;
  parm.parm.output.timeperframe.numerator = 1;
  parm.parm.output.timeperframe.denominator = fps;
  if (ioctl(fd, VIDIOC_S_PARM, &parm) < 0) perror("VIDIOC_S_PARM (output)");
  printf("loopback-feed: %s %.4s %ux%u (sizeimage %u) at %u fps, %d frames from %s\n", path,
         (char *)&fmt.fmt.pix.pixelformat, fmt.fmt.pix.width, fmt.fmt.pix.height,
         fmt.fmt.pix.sizeimage, fps, n, argv[6]);
  fflush(stdout);

  struct timespec due;
  clock_gettime(CLOCK_MONOTONIC, &due);
  long step_ns = 1000000000L / fps;
  for (unsigned long i = 0;; i++) {
    const struct frame *fr = &frames[i % n];
    unsigned len = truncate_every && i % truncate_every == truncate_every - 1 ? fr->len / 2 : fr->len;
    ssize_t w = write(fd, fr->data, len);
    if (w != (ssize_t)len) {
      fprintf(stderr, "loopback-feed: %s: write of %u bytes gave %zd (%s)\n", path, len, w,
              w < 0 ? strerror(errno) : "short");
      if (w < 0) return 1;
    }
    due.tv_nsec += step_ns;
    while (due.tv_nsec >= 1000000000L) {
      due.tv_nsec -= 1000000000L;
      due.tv_sec++;
    }
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    /* Fallen more than a second behind (a stalled guest): start the clock afresh. */
    if (now.tv_sec > due.tv_sec + 1) due = now;
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &due, NULL) == EINTR) {
    }
  }
}
