/*!
 * \copy
 *     Copyright (c)  2013, Cisco Systems
 *     All rights reserved.
 *
 *     Redistribution and use in source and binary forms, with or without
 *     modification, are permitted provided that the following conditions
 *     are met:
 *
 *        * Redistributions of source code must retain the above copyright
 *          notice, this list of conditions and the following disclaimer.
 *
 *        * Redistributions in binary form must reproduce the above copyright
 *          notice, this list of conditions and the following disclaimer in
 *          the documentation and/or other materials provided with the
 *          distribution.
 *
 *     THIS SOFTWARE IS PROVIDED BY THE COPYRIGHT HOLDERS AND CONTRIBUTORS
 *     "AS IS" AND ANY EXPRESS OR IMPLIED WARRANTIES, INCLUDING, BUT NOT
 *     LIMITED TO, THE IMPLIED WARRANTIES OF MERCHANTABILITY AND FITNESS
 *     FOR A PARTICULAR PURPOSE ARE DISCLAIMED. IN NO EVENT SHALL THE
 *     COPYRIGHT HOLDER OR CONTRIBUTORS BE LIABLE FOR ANY DIRECT, INDIRECT,
 *     INCIDENTAL, SPECIAL, EXEMPLARY, OR CONSEQUENTIAL DAMAGES (INCLUDING,
 *     BUT NOT LIMITED TO, PROCUREMENT OF SUBSTITUTE GOODS OR SERVICES;
 *     LOSS OF USE, DATA, OR PROFITS; OR BUSINESS INTERRUPTION) HOWEVER
 *     CAUSED AND ON ANY THEORY OF LIABILITY, WHETHER IN CONTRACT, STRICT
 *     LIABILITY, OR TORT (INCLUDING NEGLIGENCE OR OTHERWISE) ARISING IN
 *     ANY WAY OUT OF THE USE OF THIS SOFTWARE, EVEN IF ADVISED OF THE
 *     POSSIBILITY OF SUCH DAMAGE.
 *
 */

#include "memory.h"
#if defined(__linux__)
#include <sys/mman.h> // rtcam: large blocks are mapped (below)
#endif

WELSVP_NAMESPACE_BEGIN
/////////////////////////////////////////////////////////////////////////////////

// rtcam: every block here is zeroed. A large one is a mapping of its own
// instead of malloc + memset: the kernel's fresh pages are zero already and
// become resident only where they are written. The memset made the
// downsampler's buffers resident (6 MB at 720p) although nothing is scaled.
// As in common/src/memory_align.cpp: the mapping's length is in its first
// bytes, and the pointer kept for WelsFree is tagged with its low bit.
#if defined(__linux__)
static const uint32_t kuiMapFromBytes = 256 * 1024;
static const uint32_t kuiMapLead = 16;

static uint8_t* MapZeroed (const uint32_t kuiSize) {
  const size_t kLen = (size_t) kuiSize + kuiMapLead;
  void* pMap = mmap (NULL, kLen, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (pMap == MAP_FAILED)
    return NULL;
  * ((size_t*) pMap) = kLen;
  return (uint8_t*) pMap + kuiMapLead;
}

static bool FreeMapped (void* pBuf) {
  if (((uintptr_t) pBuf & 1) == 0)
    return false;
  uint8_t* pMap = (uint8_t*) ((uintptr_t) pBuf & ~ (uintptr_t) 1) - kuiMapLead;
  munmap (pMap, * ((size_t*) pMap));
  return true;
}
#endif

void* WelsMalloc (const uint32_t kuiSize, char* pTag) {
  const int32_t kiSizeVoidPointer       = sizeof (void**);
  const int32_t kiSizeInt32             = sizeof (int32_t);
  const int32_t kiAlignedBytes          = ALIGNBYTES - 1;
  const uint32_t kuiTotal               = kuiSize + kiAlignedBytes + kiSizeVoidPointer + kiSizeInt32;

  uint8_t* pBuf         = NULL;
  uint8_t* pAlignedBuf = NULL;
  bool bMapped = false;

#if defined(__linux__)
  if (kuiTotal >= kuiMapFromBytes) {
    pBuf = MapZeroed (kuiTotal);
    bMapped = pBuf != NULL;
  }
#endif
  if (NULL == pBuf)
    pBuf = (uint8_t*) ::calloc (1, kuiTotal);
  if (NULL == pBuf)
    return NULL;

  pAlignedBuf = pBuf + kiAlignedBytes + kiSizeVoidPointer + kiSizeInt32;
  pAlignedBuf -= WelsCastFromPointer (pAlignedBuf) & kiAlignedBytes;
  * ((void**) (pAlignedBuf - kiSizeVoidPointer)) = bMapped ? (void*) ((uintptr_t) pBuf | 1) : pBuf;
  * ((int32_t*) (pAlignedBuf - (kiSizeVoidPointer + kiSizeInt32))) = kuiSize;

  return (pAlignedBuf);
}

/////////////////////////////////////////////////////////////////////////////

void WelsFree (void* pPointer, char* pTag) {
  if (pPointer) {
    void* pBuf = * (((void**) pPointer) - 1);
#if defined(__linux__)
    if (FreeMapped (pBuf))
      return;
#endif
    ::free (pBuf);
  }
}

/////////////////////////////////////////////////////////////////////////////

void* InternalReallocate (void* pPointer, const uint32_t kuiSize, char* pTag) {
  uint32_t iOldSize = 0;
  uint8_t* pNew = NULL;
  if (pPointer != NULL)
    iOldSize = * ((int32_t*) ((uint8_t*) pPointer - sizeof (void**) - sizeof (int32_t)));
  else
    return WelsMalloc (kuiSize, pTag);

  pNew = (uint8_t*)WelsMalloc (kuiSize, pTag);
  if (0 == pNew) {
    if (iOldSize > 0 && kuiSize > 0 && iOldSize >= kuiSize)
      return (pPointer);
    return 0;
  } else if (iOldSize > 0 && kuiSize > 0)
    memcpy (pNew, pPointer, (iOldSize < kuiSize) ? iOldSize : kuiSize);
  else
    return 0;

  WelsFree (pPointer, pTag);
  return (pNew);
}

/////////////////////////////////////////////////////////////////////////////

void* WelsRealloc (void* pPointer, uint32_t* pRealSize, const uint32_t kuiSize, char* pTag) {
  const uint32_t kuiOldSize = *pRealSize;
  uint32_t kuiNewSize = 0;
  void* pLocalPointer = NULL;
  if (kuiOldSize >= kuiSize) // large enough of original block, so do nothing
    return (pPointer);

  // new request
  kuiNewSize = kuiSize + 15;
  kuiNewSize -= (kuiNewSize & 15);
  kuiNewSize += 32;

  pLocalPointer = InternalReallocate (pPointer, kuiNewSize, pTag);
  if (NULL != pLocalPointer) {
    *pRealSize = kuiNewSize;
    return (pLocalPointer);
  } else {
    return NULL;
  }

  return NULL; // something wrong
}

WELSVP_NAMESPACE_END
