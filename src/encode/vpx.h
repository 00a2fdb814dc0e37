/* What rtcam uses of libvpx: the VP8 encoder. */
#include <vpx/vpx_encoder.h>
#include <vpx/vp8cx.h>
