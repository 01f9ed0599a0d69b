#include <exception>
#include <iostream>

#include "cli.hpp"

int main(int argc, char** argv) {
  // lsattn::cli::main turns every failure of a command into a message and exit code 1; this is
  // the last resort for what fails before a command starts (building the option parser).
  try {
    return lsattn::cli::main(argc, argv, std::cout, std::cerr);
  } catch (const std::exception& e) {
    std::cerr << "lsattn: unexpected error: " << e.what() << "\n";
  } catch (...) {
    std::cerr << "lsattn: unexpected error: an exception of unknown type\n";
  }
  return 1;
}
