#include <nxl/nxl.h>
int main(void) { return 0; }
