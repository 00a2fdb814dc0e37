/* Unplugs the kernel's vivid camera as if its USB cable were pulled: sets vivid's
 * "Disconnect" control (VIVID_CID_VIVID_BASE + 65, an error-injection button, present
 * unless vivid is loaded with no_error_inj=1), which unregisters the device's nodes
 * while programs still hold them open. The QEMU system test runs it inside the guest,
 * which has no v4l2-ctl: scripts/qemu-vivid.sh builds it statically for aarch64. */
#include <fcntl.h>
#include <linux/videodev2.h>
#include <stdio.h>
#include <sys/ioctl.h>
#include <unistd.h>

#define VIVID_CID_VIVID_BASE (0x00f00000 | 0xf000)
#define VIVID_CID_DISCONNECT (VIVID_CID_VIVID_BASE + 65)

int main(int argc, char **argv) {
  const char *path = argc > 1 ? argv[1] : "/dev/video0";
  int fd = open(path, O_RDWR);
  if (fd < 0) {
    perror(path);
    return 1;
  }
  struct v4l2_control ctrl = {.id = VIVID_CID_DISCONNECT, .value = 0};
  if (ioctl(fd, VIDIOC_S_CTRL, &ctrl) < 0) {
    perror("VIDIOC_S_CTRL (vivid Disconnect)");
    return 1;
  }
  close(fd);
  return 0;
}
