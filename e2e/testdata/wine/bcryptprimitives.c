/*
 * bcryptprimitives.dll for Wine 8.0, which lacks ProcessPrng: Go >= 1.24
 * programs on Windows take their random bytes from it and die at start
 * without it. Built with mingw by mk/wine.mk and copied into the test's
 * Wine prefix only; real Windows has its own.
 */
#include <windows.h>

BOOLEAN WINAPI SystemFunction036(PVOID buf, ULONG len); /* RtlGenRandom, advapi32 */

BOOL WINAPI ProcessPrng(PBYTE p, SIZE_T n)
{
	while (n > 0) {
		ULONG chunk = n > 0x40000000 ? 0x40000000 : (ULONG)n;
		if (!SystemFunction036(p, chunk))
			return FALSE;
		p += chunk;
		n -= chunk;
	}
	return TRUE;
}
