import Testing
@testable import DermisCore
@Test func placeholder() { #expect(true) }
