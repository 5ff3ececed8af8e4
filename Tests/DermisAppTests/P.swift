import Testing
import VaporTesting
@testable import DermisApp
@Test func placeholder2() { #expect(true) }
